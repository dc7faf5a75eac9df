"""The configured cache, Celery broker and MQTT broker are the real services, and they work."""

import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings
from django.core.cache import cache
from kombu import Connection, Exchange, Queue

from prepaid.celery import app


def test_the_cache_round_trips_through_redis():
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")
    key = f"probe-{uuid.uuid4()}"
    cache.set(key, {"ok": 1}, timeout=30)
    assert cache.get(key) == {"ok": 1}


def test_a_message_round_trips_through_the_celery_broker():
    assert app.conf.broker_url.startswith("redis://")
    name = f"probe-{uuid.uuid4()}"
    queue = Queue(name, Exchange(name), routing_key=name, auto_delete=True)
    with Connection(app.conf.broker_url) as connection:
        connection.Producer().publish(
            {"probe": name}, exchange=queue.exchange, routing_key=name, declare=[queue]
        )
        message = connection.SimpleQueue(queue).get(timeout=5)
        assert message.payload == {"probe": name}
        message.ack()


@pytest.mark.timeout(20)
def test_a_message_round_trips_through_mosquitto():
    subscribed, received = threading.Event(), threading.Event()
    topic = f"prepaid/test/{uuid.uuid4()}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(client, userdata, message):
        if message.payload == b"ping":
            received.set()

    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    host, port = settings.MQTT_URL.split("://")[1].split(":")
    client.connect(host, int(port))
    client.loop_start()
    try:
        client.subscribe(topic, qos=1)
        assert subscribed.wait(10)
        client.publish(topic, b"ping", qos=1).wait_for_publish(5)
        assert received.wait(10)
    finally:
        client.loop_stop()
        client.disconnect()

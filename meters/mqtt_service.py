"""The long-running MQTT ingest process (`manage.py mqtt_ingest`).

paho-mqtt's network thread only queues what arrives; this process's main thread takes what has
arrived (up to `batch_size` messages) as a batch, stores it in one transaction, and only then
acknowledges its messages (manual acks). With a persistent session
(fixed client id, clean_start=False, a session expiry) the broker keeps what we have not
acknowledged across our crashes and restarts and delivers it again, and storing it again adds
nothing. The broker sends at most `receive_maximum` unacknowledged messages, which bounds the
memory a slow database can cost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import paho.mqtt.client as mqtt
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from meters.mqtt_client import BrokerAddress, make_client
from meters.mqtt_ingest import (
    BatchResult,
    DeviceDirectory,
    Message,
    SeenMarks,
    messages_ingest,
    rejection_record,
)
from meters.protocols.mqtt_topics import HEARTBEAT_TOPIC, SUBSCRIPTIONS

log = logging.getLogger(__name__)

HEARTBEAT_CACHE_KEY = "mqtt-ingest:heartbeat"
_UNSUPPORTED_PROTOCOL_VERSION = 132
_LONGEST_BACKOFF_S = 30.0


@dataclass(frozen=True)
class Settings:
    client_id: str = "prepaid-ingest"
    batch_size: int = 500
    flush_ms: int = 200
    quiet_ms: int = 10
    session_expiry_s: int = 7 * 24 * 3600
    heartbeat_s: float = 5.0
    receive_maximum: int = 5000


@dataclass
class Totals:
    messages: int = 0
    readings: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    connected: bool = False
    started_at: datetime = field(default_factory=timezone.now)


class _Delivery(NamedTuple):
    message: Message
    mid: int
    qos: int


class IngestService:
    def __init__(self, address: BrokerAddress, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.totals = Totals()
        self._address = address
        self._inbox: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self.protocol = mqtt.MQTTv5
        self._client = self._make_client()
        self._last_heartbeat = 0.0
        self._directory = DeviceDirectory()
        self._marks = SeenMarks()

    def _make_client(self) -> mqtt.Client:
        extra = {} if self.protocol == mqtt.MQTTv5 else {"clean_session": False}
        client = make_client(
            self.settings.client_id,
            self._address,
            protocol=self.protocol,
            manual_ack=True,
            **extra,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # paho's network thread: never raise here, an exception would kill the loop.

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        try:
            if reason_code.is_failure:
                log.error("mqtt ingest: the broker refused the connection: %s", reason_code)
                return
            self.totals.connected = True
            log.info("mqtt ingest: connected (session present: %s)", flags.session_present)
            # Subscribing again is harmless with a kept session and needed without one.
            client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])
        except Exception:
            log.exception("mqtt ingest: on_connect failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.totals.connected = False
        log.warning("mqtt ingest: disconnected (%s); paho reconnects with backoff", reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            self._inbox.put(
                _Delivery(
                    Message(message.topic, message.payload, datetime.now(UTC)),
                    message.mid,
                    message.qos,
                )
            )
        except Exception:
            # A message we cannot even read (a topic that is not UTF-8) would come back after
            # every reconnect if it stayed unacknowledged: drop it, loudly.
            log.exception("mqtt ingest: dropping a message that cannot be read")
            client.ack(message.mid, message.qos)

    # The main thread.

    def start(self) -> None:
        if self.protocol != mqtt.MQTTv5:
            self._client.connect_async(self._address.host, self._address.port, keepalive=30)
            self._client.loop_start()
            return
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.receive_maximum
        self._client.connect_async(
            self._address.host,
            self._address.port,
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def _negotiate_protocol(self, stop: threading.Event) -> bool:
        """MQTT 5 unless the broker refuses it, as the embedded demo broker (amqtt) does; in
        MQTT 3.1.1 a persistent session is clean_session=False. False if stopped meanwhile."""
        backoff = 0.5
        while not stop.is_set():
            answer = self._probe()
            if answer == _UNSUPPORTED_PROTOCOL_VERSION:
                log.warning("mqtt ingest: the broker has no MQTT 5; using MQTT 3.1.1")
                self.protocol = mqtt.MQTTv311
                self._client = self._make_client()
            if answer is not None:
                return True
            stop.wait(backoff)
            backoff = min(backoff * 2, _LONGEST_BACKOFF_S)
        return False

    def _probe(self) -> int | None:
        """The broker's answer to a plain MQTT 5 CONNECT (amqtt leaves one with properties
        unanswered), or None when no broker answers."""
        answers: queue.Queue[int] = queue.Queue()
        probe = make_client(f"{self.settings.client_id}-probe", self._address)
        probe.on_connect = lambda client, userdata, flags, code, props: answers.put(code.value)
        try:
            probe.connect(self._address.host, self._address.port, keepalive=10)
        except OSError as error:
            log.warning("mqtt ingest: no broker at %s (%s)", self._address.host, error)
            return None
        probe.loop_start()
        try:
            return answers.get(timeout=10)
        except queue.Empty:
            return None
        finally:
            probe.disconnect()
            probe.loop_stop()

    def run(self, stop: threading.Event) -> None:
        """Take, store and acknowledge batches until `stop` is set; then store and acknowledge
        what has already arrived, and disconnect, keeping the session for the next start."""
        if not self._negotiate_protocol(stop):
            return
        self.start()
        try:
            while not stop.is_set():
                self._beat()
                batch = self._take(wait=True)
                if batch:
                    self._flush(batch, stop)
            while batch := self._take(wait=False):
                self._flush(batch, stop=None)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            log.info("mqtt ingest: stopped after %s messages", self.totals.messages)

    def _take(self, *, wait: bool) -> list[_Delivery]:
        """The next batch: up to `batch_size` messages, collected for at most `flush_ms` from
        the first, and closed early once none has come for `quiet_ms`, so a lone message (a
        relay confirmation) is stored at once while a stream of them fills its batches. With
        `wait`, wait up to `flush_ms` for the first message; without, take what is there."""
        inbox = self._inbox
        settings = self.settings
        try:
            first = inbox.get(timeout=settings.flush_ms / 1000) if wait else inbox.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + settings.flush_ms / 1000
        while len(batch) < settings.batch_size:
            timeout = min(deadline - time.monotonic(), settings.quiet_ms / 1000)
            try:
                if wait and timeout > 0:
                    batch.append(inbox.get(timeout=timeout))
                else:
                    batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _flush(self, batch: list[_Delivery], stop: threading.Event | None) -> None:
        backoff = 0.5
        while True:
            try:
                result = self._store(batch)
                break
            except (OperationalError, InterfaceError):
                # The database is away: keep the batch unacknowledged and try again. On
                # shutdown give up instead; the broker keeps the messages for the next start.
                log.exception("mqtt ingest: the database failed; retrying in %.1f s", backoff)
                close_old_connections()
                if stop is None or stop.wait(backoff):
                    return
                backoff = min(backoff * 2, _LONGEST_BACKOFF_S)
        for delivery in batch:
            if delivery.qos:
                self._client.ack(delivery.mid, delivery.qos)
        totals = self.totals
        totals.batches += 1
        totals.messages += len(batch)
        totals.readings += result.readings
        totals.duplicates += result.duplicates
        totals.rejected += sum(result.rejected.values())

    def _store(self, batch: list[_Delivery]) -> BatchResult:
        messages = [delivery.message for delivery in batch]
        try:
            return messages_ingest(messages=messages, directory=self._directory, marks=self._marks)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            # A bug, not bad input (the parsers turn every input into a rejection): find the
            # message that trips it, so one poisoned message cannot stall all the others.
            log.exception("mqtt ingest: a batch failed; storing its messages one by one")
        result = BatchResult()
        for message in messages:
            try:
                single = messages_ingest(
                    messages=[message], directory=self._directory, marks=self._marks
                )
            except (OperationalError, InterfaceError):
                raise
            except Exception:
                log.exception("mqtt ingest: dropping a message on %s", message.topic)
                rejection_record(message=message, reason="internal error")
                result.rejected["internal error"] += 1
                continue
            result.readings += single.readings
            result.duplicates += single.duplicates
            result.rejected.update(single.rejected)
        return result

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat < self.settings.heartbeat_s:
            return
        self._last_heartbeat = now
        totals = self.totals
        beat = {
            "at": timezone.now().isoformat(),
            "started_at": totals.started_at.isoformat(),
            "pid": os.getpid(),
            "connected": totals.connected,
            "messages": totals.messages,
            "readings": totals.readings,
            "duplicates": totals.duplicates,
            "rejected": totals.rejected,
            "backlog": self._inbox.qsize(),
        }
        try:
            cache.set(HEARTBEAT_CACHE_KEY, beat, timeout=None)
        except Exception:
            log.exception("mqtt ingest: could not write the heartbeat to the cache")
        if totals.connected:
            self._client.publish(HEARTBEAT_TOPIC, json.dumps(beat), qos=0, retain=True)

"""Per-device broker logins: generated, shown once, stored only as a Mosquitto hash."""

import base64
import hashlib
import hmac

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from meters.models import MqttDevice
from meters.mqtt_devices import (
    mqtt_device_create,
    mqtt_device_rotate_credentials,
    mqtt_device_update,
    mqtt_password_hash,
)
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


def mosquitto_accepts(password: str, stored: str) -> bool:
    """Mosquitto 2's check of a `$7$` hash, written out independently of the code under test."""
    empty, kind, iterations, salt, digest = stored.split("$")
    assert (empty, kind) == ("", "7")
    computed = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(computed, base64.b64decode(digest))


def _create(prop, **overrides):
    fields = {"name": "Meter 1", "format": "native", "key": "SN-1", **overrides}
    return mqtt_device_create(property=prop, actor=None, **fields)


class TestPasswordHash:
    def test_it_matches_a_hash_mosquitto_passwd_wrote(self):
        # `mosquitto_passwd -b file alice secret` (mosquitto 2.0.11) wrote this line.
        stored = (
            "$7$101$Zk1U5krglAx6s0xQ$4Jejbjh32ImQmuFoYru4lkB8lkaWBBn8VSRczJRmgl1gwRdOpzeycyReZVoJ"
            "bJteAdFwO1RO54Zdwdk50rgMFg=="
        )
        salt = base64.b64decode(stored.split("$")[3])
        assert mqtt_password_hash("secret", salt=salt) == stored

    def test_it_uses_a_fresh_12_byte_salt_each_time(self):
        first, second = mqtt_password_hash("same"), mqtt_password_hash("same")
        assert first != second
        assert len(base64.b64decode(first.split("$")[3])) == 12
        assert mosquitto_accepts("same", first)
        assert mosquitto_accepts("same", second)


class TestCreate:
    def test_it_returns_a_password_that_only_the_stored_hash_knows(self, property_a1):
        device, password = _create(property_a1)
        device.refresh_from_db()
        assert len(password) >= 40
        assert password not in device.password_hash
        assert mosquitto_accepts(password, device.password_hash)
        assert not mosquitto_accepts(password + "x", device.password_hash)
        assert device.username.startswith("dev-")
        assert len(device.username) == 16
        assert device.organisation == property_a1.organisation

    def test_it_is_audited_without_the_hash(self, property_a1):
        device, _ = _create(property_a1)
        row = AuditLog.objects.get(action="mqtt_device.create", object_id=str(device.uuid))
        assert row.property == property_a1
        assert row.after == {
            "name": "Meter 1",
            "format": "native",
            "key": "SN-1",
            "username": device.username,
        }

    def test_a_key_in_use_anywhere_is_refused_without_saying_whose(self, property_a1, property_b1):
        _create(property_b1)
        with pytest.raises(ValidationError) as refused:
            _create(property_a1, name="Another")
        message = refused.value.message_dict["key"][0]
        assert "already in use" in message
        assert "Org B" not in message
        assert "B One" not in message

    def test_the_same_key_in_another_format_is_other_topics(self, property_a1):
        _create(property_a1)
        device, _ = _create(property_a1, name="Plug", format="tasmota")
        assert device.key == "SN-1"

    @pytest.mark.parametrize("prefix", ["meters", "tele", "emon", "prepaid"])
    def test_a_shelly_prefix_cannot_be_a_reserved_topic_level(self, property_a1, prefix):
        with pytest.raises(ValidationError) as refused:
            _create(property_a1, format="shelly", key=prefix)
        assert "reserved" in refused.value.message_dict["key"][0]
        assert not MqttDevice.objects.exists()

    @pytest.mark.parametrize("key", ["a/b", "a+", "#", "", "-lead", "x" * 101, "ok\n"])
    def test_a_key_that_is_not_one_topic_level_is_refused(self, property_a1, key):
        with pytest.raises(ValidationError) as refused:
            _create(property_a1, key=key)
        assert "key" in refused.value.message_dict

    def test_an_unknown_format_is_refused(self, property_a1):
        with pytest.raises(ValidationError) as refused:
            _create(property_a1, format="lorawan")
        assert "format" in refused.value.message_dict


class TestRotate:
    def test_the_old_password_stops_matching_and_the_new_one_does(self, property_a1):
        device, old = _create(property_a1)
        rotated_at = device.credentials_rotated_at
        new = mqtt_device_rotate_credentials(device=device, actor=None)
        device.refresh_from_db()
        assert new != old
        assert mosquitto_accepts(new, device.password_hash)
        assert not mosquitto_accepts(old, device.password_hash)
        assert device.credentials_rotated_at > rotated_at

    def test_it_is_audited_without_the_hash(self, property_a1):
        device, _ = _create(property_a1)
        mqtt_device_rotate_credentials(device=device, actor=None)
        row = AuditLog.objects.get(action="mqtt_device.rotate_credentials")
        assert "password_hash" not in row.before
        assert "password_hash" not in row.after
        assert row.after == {"credentials_rotated_at": device.credentials_rotated_at.isoformat()}


class TestUpdate:
    def test_a_device_can_be_renamed(self, property_a1):
        device, _ = _create(property_a1)
        mqtt_device_update(device=device, actor=None, name="Kitchen")
        device.refresh_from_db()
        assert device.name == "Kitchen"
        assert AuditLog.objects.filter(action="mqtt_device.update").exists()

    def test_its_topics_cannot_change(self, property_a1):
        device, _ = _create(property_a1)
        with pytest.raises(ValidationError) as refused:
            mqtt_device_update(device=device, actor=None, key="SN-2")
        assert "key" in refused.value.message_dict


class TestApi:
    def _body(self, prop, **overrides):
        return {"property": str(prop.uuid), "name": "M", "format": "native", "key": "SN-9"} | (
            overrides
        )

    def test_create_shows_the_password_once_and_never_the_hash(self, owner_a, property_a1, api_as):
        api = api_as(owner_a)
        created = api.post(reverse("mqtt-device-list"), self._body(property_a1))
        assert created.status_code == 201, created.content
        body = created.json()
        device = MqttDevice.objects.get(uuid=body["id"])
        assert mosquitto_accepts(body["password"], device.password_hash)
        assert body["username"] == device.username
        assert {"access": "read", "topic": "meters/SN-9/cmd"} in body["topics"]
        assert "password_hash" not in body
        for response in (
            api.get(reverse("mqtt-device-detail", args=[device.uuid])),
            api.get(reverse("mqtt-device-list")),
            api.patch(reverse("mqtt-device-detail", args=[device.uuid]), {"name": "Renamed"}),
        ):
            assert response.status_code == 200
            assert "password" not in response.content.decode()
            assert device.password_hash.encode() not in response.content

    def test_rotation_answers_a_new_password(self, owner_a, property_a1, api_as):
        device, old = _create(property_a1)
        response = api_as(owner_a).post(
            reverse("mqtt-device-rotate-credentials", args=[device.uuid])
        )
        assert response.status_code == 200, response.content
        device.refresh_from_db()
        assert mosquitto_accepts(response.json()["password"], device.password_hash)
        assert not mosquitto_accepts(old, device.password_hash)

    def test_a_duplicate_topic_is_a_field_error(self, owner_a, property_a1, property_b1, api_as):
        _create(property_b1, key="SN-9")
        response = api_as(owner_a).post(reverse("mqtt-device-list"), self._body(property_a1))
        assert response.status_code == 400
        assert "already in use" in response.json()["key"][0]

    def test_a_reserved_shelly_prefix_is_a_field_error(self, owner_a, property_a1, api_as):
        body = self._body(property_a1, format="shelly", key="zigbee2mqtt")
        response = api_as(owner_a).post(reverse("mqtt-device-list"), body)
        assert response.status_code == 400
        assert "reserved" in response.json()["key"][0]

    def test_another_organisations_device_is_not_found(self, owner_a, property_b1, api_as):
        device, _ = _create(property_b1)
        api = api_as(owner_a)
        assert api.get(reverse("mqtt-device-detail", args=[device.uuid])).status_code == 404
        rotate = api.post(reverse("mqtt-device-rotate-credentials", args=[device.uuid]))
        assert rotate.status_code == 404
        assert api.get(reverse("mqtt-device-list")).json()["results"] == []

    def test_managers_rename_but_cannot_hand_out_logins(self, manager_a1, property_a1, api_as):
        device, _ = _create(property_a1)
        api = api_as(manager_a1)
        assert api.post(reverse("mqtt-device-list"), self._body(property_a1)).status_code == 403
        rotate = api.post(reverse("mqtt-device-rotate-credentials", args=[device.uuid]))
        assert rotate.status_code == 403
        renamed = api.patch(reverse("mqtt-device-detail", args=[device.uuid]), {"name": "R"})
        assert renamed.status_code == 200


class TestExport:
    def test_it_refuses_a_backend_url_without_credentials(self, settings, tmp_path):
        settings.MQTT_URL = "mqtt://127.0.0.1:1883"
        with pytest.raises(CommandError, match="MQTT_URL has no credentials"):
            call_command(
                "mqtt_auth_export",
                "--password-file",
                str(tmp_path / "passwd"),
                "--acl-file",
                str(tmp_path / "acl"),
            )
        assert list(tmp_path.iterdir()) == []

    def test_it_writes_each_login_and_only_its_own_topics(self, settings, tmp_path, property_a1):
        settings.MQTT_URL = "mqtt://backend:s3cret@127.0.0.1:1883"
        device = factories.MqttDeviceFactory(property=property_a1, key="SN-7")
        passwd, acl = tmp_path / "passwd", tmp_path / "acl"
        call_command("mqtt_auth_export", "--password-file", passwd, "--acl-file", acl)

        logins = dict(
            line.split(":", 1) for line in passwd.read_text().splitlines() if line[:1] != "#"
        )
        assert logins[device.username] == device.password_hash
        assert mosquitto_accepts("s3cret", logins["backend"])
        assert passwd.stat().st_mode & 0o777 == 0o640
        assert acl.stat().st_mode & 0o777 == 0o640
        device_block = acl.read_text().split(f"user {device.username}\n")[1].split("\n\n")[0]
        assert device_block.splitlines() == [
            "topic write meters/SN-7/telemetry",
            "topic write meters/SN-7/status",
            "topic write meters/SN-7/cmd/ack",
            "topic read meters/SN-7/cmd",
        ]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["acl", "passwd"]


def test_the_admin_never_shows_the_hash(client, property_a1):
    device, _ = _create(property_a1)
    client.force_login(factories.UserFactory(is_staff=True, is_superuser=True))
    for url in (
        reverse("admin:meters_mqttdevice_changelist"),
        reverse("admin:meters_mqttdevice_change", args=[device.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert device.username.encode() in response.content
        assert device.password_hash.encode() not in response.content

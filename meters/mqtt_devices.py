"""Broker logins for devices that report over MQTT: each device gets its own username and
password, generated here and shown once. Only a Mosquitto-format hash is stored, and
`manage.py mqtt_auth_export` hands the hashes and the topic grants to the broker.
"""

import base64
import hashlib
import re
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Property
from accounts.services import Actor
from meters.models import MqttDevice
from meters.protocols.mqtt_formats import Format
from meters.protocols.mqtt_topics import key_problem
from prepaid.audit.services import audit_record, create_audited, only_fields, update_audited

# Mosquitto 2's PBKDF2-HMAC-SHA512 format, `$7$<iterations>$<salt>$<hash>`, with the salt size
# and iteration count mosquitto_passwd uses. The passwords are 256 random bits, so more
# iterations would add nothing but broker CPU on every connect.
HASH_ID = "7"
HASH_ITERATIONS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 32

DEVICE_FIELDS = ("name", "format", "key", "username")
UPDATABLE_FIELDS = ("name",)


def _key_pattern() -> re.Pattern[str]:
    """The model's check constraint on keys, so the friendly check and the database's agree."""
    constraint = next(c for c in MqttDevice._meta.constraints if c.name == "mqtt_device_key_valid")
    [(_, pattern)] = constraint.condition.children
    return re.compile(pattern)


KEY_PATTERN = _key_pattern()


def mqtt_password_hash(password: str, *, salt: bytes | None = None) -> str:
    """The password as a line of a Mosquitto 2 password file would hold it (after `user:`)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    encoded_salt = base64.b64encode(salt).decode()
    encoded_digest = base64.b64encode(digest).decode()
    return f"${HASH_ID}${HASH_ITERATIONS}${encoded_salt}${encoded_digest}"


def _new_password() -> tuple[str, str]:
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    return password, mqtt_password_hash(password)


def _check_topic_key(format: str, key: str) -> None:
    if format not in MqttDevice.Format.values:
        raise ValidationError({"format": f"Unknown format {format!r}."})
    # fullmatch: with `re.match`, the pattern's `$` would let a trailing newline through.
    if not KEY_PATTERN.fullmatch(key):
        raise ValidationError(
            {
                "key": "Use 1 to 100 letters, digits, '.', '_', ':' or '-', starting with a "
                "letter or digit."
            }
        )
    problem = key_problem(Format(format), key)
    if problem:
        raise ValidationError({"key": problem})
    # Topics are one namespace on the broker, so this looks at every organisation's devices,
    # and says nothing about whose device holds the key.
    if MqttDevice.objects.filter(format=format, key=key).exists():
        raise ValidationError(
            {"key": "These topics are already in use by another device; choose another key."}
        )


@transaction.atomic
def mqtt_device_create(
    *, property: Property, actor: Actor, name: str, format: str, key: str
) -> tuple[MqttDevice, str]:
    """Register a device and generate its broker login. Returns the device and its password,
    which is not stored and cannot be shown again."""
    _check_topic_key(format, key)
    password, password_hash = _new_password()
    device = MqttDevice(
        organisation_id=property.organisation_id,
        property=property,
        name=name,
        format=format,
        key=key,
        username=f"dev-{secrets.token_hex(6)}",
        password_hash=password_hash,
        credentials_rotated_at=timezone.now(),
    )
    create_audited(
        device,
        actor=actor,
        action="mqtt_device.create",
        fields=DEVICE_FIELDS,
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )
    return device, password


@transaction.atomic
def mqtt_device_rotate_credentials(*, device: MqttDevice, actor: Actor) -> str:
    """Give the device a new password and return it. The old one keeps working on the broker
    until the next `mqtt_auth_export` and reload."""
    locked = MqttDevice.objects.select_for_update(no_key=True).get(pk=device.pk)
    before = {"credentials_rotated_at": locked.credentials_rotated_at.isoformat()}
    password, password_hash = _new_password()
    device.password_hash = password_hash
    device.credentials_rotated_at = timezone.now()
    device.save(update_fields=["password_hash", "credentials_rotated_at", "updated_at"])
    # The hash stays out of the audit log: it is as good as the password to an offline attack.
    audit_record(
        organisation_id=device.organisation_id,
        property_id=device.property_id,
        actor=actor,
        action="mqtt_device.rotate_credentials",
        instance=device,
        before=before,
        after={"credentials_rotated_at": device.credentials_rotated_at.isoformat()},
    )
    return password


@transaction.atomic
def mqtt_device_update(*, device: MqttDevice, actor: Actor, **changes: Any) -> MqttDevice:
    """Rename a device. Its format and key are its topics, which its meters and the device's
    own configuration depend on: a device that changes them is registered anew."""
    only_fields(changes, UPDATABLE_FIELDS)
    update_audited(
        instance=device,
        changes=changes,
        actor=actor,
        action="mqtt_device.update",
        organisation_id=device.organisation_id,
        property_id=device.property_id,
    )
    return device

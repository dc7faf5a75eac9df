"""Write Mosquitto's password file and ACL from the devices prepaid knows.

Each device may use only its own topics (`device_grants`); the backend login from MQTT_URL gets
exactly what the ingest service and the command sender need (`backend_grants`). Both files are
replaced atomically, so the broker never reads half a file, and mosquitto rereads them on SIGHUP.
"""

import grp
import os
import signal
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from meters.models import MqttDevice
from meters.mqtt_client import BrokerAddress
from meters.mqtt_devices import mqtt_password_hash
from meters.protocols.mqtt_formats import Format
from meters.protocols.mqtt_topics import backend_grants, device_grants

# Readable by the broker through its group, never by everyone: a hash is still worth attacking.
FILE_MODE = 0o640
HEADER = "# Written by `manage.py mqtt_auth_export`; edits here are overwritten.\n"


class Command(BaseCommand):
    help = "Write the Mosquitto password file and ACL for every MQTT device and the backend."

    def add_arguments(self, parser):
        parser.add_argument("--password-file", required=True, type=Path)
        parser.add_argument("--acl-file", required=True, type=Path)
        parser.add_argument(
            "--group",
            help="Give both files to this group (e.g. mosquitto) so the broker can read them.",
        )
        parser.add_argument(
            "--reload-pid-file",
            type=Path,
            help="Mosquitto's pid file: send it SIGHUP so it rereads both files.",
        )

    def handle(self, *args, password_file, acl_file, group, reload_pid_file, **options):
        backend = _backend_login()
        gid = _group_id(group)
        devices = list(MqttDevice.objects.order_by("username"))
        if any(device.username == backend.username for device in devices):
            raise CommandError(
                f"The backend username {backend.username!r} is also a device's username."
            )

        passwords = [f"{backend.username}:{mqtt_password_hash(backend.password)}"]
        passwords += [f"{device.username}:{device.password_hash}" for device in devices]
        acl = [_user_block(backend.username, backend_grants())]
        acl += [
            _user_block(device.username, device_grants(Format(device.format), device.key))
            for device in devices
        ]
        rules = sum(len(block) - 1 for block in acl)

        _replace_together(
            {
                password_file: HEADER + "\n".join(passwords) + "\n",
                acl_file: HEADER + "\n\n".join("\n".join(block) for block in acl) + "\n",
            },
            gid,
        )

        self.stdout.write(
            f"Wrote {len(devices)} device logins and the backend login to {password_file}, "
            f"and {rules} topic rules to {acl_file}."
        )
        if reload_pid_file is not None:
            pid = _reload(reload_pid_file)
            self.stdout.write(f"Sent SIGHUP to mosquitto (pid {pid}).")


def _backend_login() -> BrokerAddress:
    backend = BrokerAddress.from_url(settings.MQTT_URL)
    if not backend.username or not backend.password:
        raise CommandError(
            "MQTT_URL has no credentials: set it to mqtt://<user>:<password>@host:port so the "
            "backend has a login of its own."
        )
    # A colon ends the username in the password file; whitespace ends it in the ACL.
    if ":" in backend.username or any(char.isspace() for char in backend.username):
        raise CommandError("The backend username in MQTT_URL cannot hold ':' or whitespace.")
    return backend


def _group_id(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise CommandError(f"No such group: {group!r}.") from None


def _user_block(username: str, grants: list[tuple[str, str]]) -> list[str]:
    return [f"user {username}", *(f"topic {access} {topic}" for access, topic in grants)]


def _replace_together(contents: dict[Path, str], gid: int | None) -> None:
    """Both files are complete on disk before either replaces its predecessor, so the broker
    never pairs a new password file with an old ACL because a write failed half way."""
    staged: list[tuple[str, Path]] = []
    try:
        for target, content in contents.items():
            staged.append((_stage(target, content, gid), target))
    except BaseException:
        for temporary, _ in staged:
            os.unlink(temporary)
        raise
    for temporary, target in staged:
        os.replace(temporary, target)


def _stage(target: Path, content: str, gid: int | None) -> str:
    """Write `content` to a temporary file beside `target` (same file system, so the rename is
    atomic) with the final mode and group, and return its path."""
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, FILE_MODE)
        if gid is not None:
            os.chown(temporary, -1, gid)
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def _reload(pid_file: Path) -> int:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as error:
        raise CommandError(f"Could not signal mosquitto from {pid_file}: {error}") from error
    return pid

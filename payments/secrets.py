"""Payment-provider secrets at rest: sealed with Fernet, or named environment variables.

A stored secret is either `env:NAME`, read from the environment when a provider needs it (the
secret never touches the database), or a Fernet token. The key is PAYMENTS_SECRETS_KEY when set,
else derived from SECRET_KEY, so a database dump alone never yields a provider key.
"""

from __future__ import annotations

import base64
import os

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ENV_PREFIX = "env:"


class SecretUnavailable(ImproperlyConfigured):
    """A stored secret cannot be read: its variable is unset, or it was sealed with another key."""


def _fernet() -> Fernet:
    configured = getattr(settings, "PAYMENTS_SECRETS_KEY", "")
    if configured:
        return Fernet(configured)
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"prepaid payment secrets"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(value: str) -> str:
    """What to store for a secret the user typed: an `env:` reference as is, anything else
    encrypted."""
    if value.startswith(ENV_PREFIX):
        return value
    return _fernet().encrypt(value.encode()).decode()


def unseal(stored: str) -> str:
    if stored.startswith(ENV_PREFIX):
        name = stored.removeprefix(ENV_PREFIX)
        value = os.environ.get(name)
        if not value:
            raise SecretUnavailable(f"The environment variable {name} is not set.")
        return value
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnavailable(
            "A stored secret was sealed with another key; enter it again."
        ) from exc

"""A missing or invalid environment variable stops start-up with a message naming it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_django(**overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "prepaid.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = start_django(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/prepaid"),
        ("CELERY_BROKER_URL", "amqp://guest@localhost//"),
        ("MQTT_URL", "http://127.0.0.1:1883"),
        ("EMAIL_PORT", "twenty-five"),
        ("REDIS_URL", "memcached://localhost"),
    ],
)
def test_an_invalid_variable_is_named_in_the_error(variable, value):
    result = start_django(SECRET_KEY="x", **{variable: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {variable} must" in result.stderr


def test_development_defaults_need_no_services(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.endswith("_URL")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL,"
            " s.CACHES['default']['BACKEND'])",
        ],
        cwd=ROOT,
        env={**env, "DEBUG": "true", "PREPAID_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "filesystem://",
        "django.core.cache.backends.locmem.LocMemCache",
    ]


def test_every_variable_the_settings_read_is_documented_in_env_example():
    source = (ROOT / "prepaid" / "settings.py").read_text()
    read = set(re.findall(r'(?:environ\.get|env_\w+|env\.list)\(\s*"([A-Z_]+)"', source))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read
    assert read - documented == set()

"""PostgreSQL connections prepare the statements they run often, unless told not to."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db

PREPARED = "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s"


def prepared_count(marker: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(PREPARED, [f"%{marker}%"])
        return cursor.fetchone()[0]


def test_a_statement_is_prepared_once_its_connection_has_run_it_five_times():
    marker = "prepare_me_test"
    with connection.cursor() as cursor:
        for _ in range(5):
            cursor.execute(f"SELECT %s AS {marker}", [1])
        assert prepared_count(marker) == 0
        cursor.execute(f"SELECT %s AS {marker}", [1])
    assert prepared_count(marker) == 1


def options_with(**overrides: str) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, django; django.setup(); from django.conf import settings;"
            "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "prepaid.settings", **overrides},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_a_threshold_of_zero_turns_preparing_off_for_poolers_that_cannot_keep_them():
    assert options_with(DATABASE_PREPARE_THRESHOLD="0") == {
        "server_side_binding": True,
        "prepare_threshold": None,
    }
    assert options_with()["prepare_threshold"] == 5

"""Running the project's own commands in processes of their own, on the test's database."""

import os

from django.db import connection


def process_env(**extra: str) -> dict[str, str]:
    """This process's environment, pointed at the test database (not the one settings name)."""
    database = connection.settings_dict
    url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return {**os.environ, "DATABASE_URL": url, **extra}

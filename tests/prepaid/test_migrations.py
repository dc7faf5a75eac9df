import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    # --check exits non-zero, and names the app, when a model differs from its migrations.
    call_command("makemigrations", check=True, dry_run=True, verbosity=1)

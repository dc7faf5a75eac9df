import pytest
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))
    assert "/api/v1/accounts/{id}/close/" in (tmp_path / "s.yml").read_text()


def test_the_interactive_docs_are_served_from_local_assets(client, owner_a):
    client.force_login(owner_a)
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
    assert client.get(reverse("api-schema")).status_code == 200

"""Owners set up payment providers over the API; secrets go in and never come out."""

import pytest

from payments.models import ProviderConfig
from payments.services import provider_config_save, provider_secret
from prepaid.audit.models import AuditLog

pytestmark = pytest.mark.django_db

URL = "/api/v1/payment-providers/"


def test_an_owner_adds_a_provider_and_sees_which_secrets_are_set_never_their_values(
    api_as, owner_a, org_a
):
    response = api_as(owner_a).post(
        URL,
        {"provider": "sandbox", "secrets": {"webhook_secret": "whsec_very_secret"}},
        format="json",
    )
    assert response.status_code == 201, response.data
    config = ProviderConfig.objects.get(organisation=org_a)
    assert response.data["secrets_set"] == {"webhook_secret": True}
    assert "whsec_very_secret" not in response.content.decode()
    assert response.data["webhook_url"].endswith(f"/payments/webhooks/sandbox/{config.uuid}/")
    assert provider_secret(config=config, name="webhook_secret") == "whsec_very_secret"
    listed = api_as(owner_a).get(URL)
    assert "whsec_very_secret" not in listed.content.decode()
    audit = AuditLog.objects.get(action="payments.provider.create")
    assert "whsec_very_secret" not in str(audit.after)


def test_a_blank_secret_keeps_the_stored_one(api_as, owner_a, org_a):
    config = provider_config_save(
        organisation=org_a, provider="sandbox", actor=None, secrets={"webhook_secret": "old"}
    )
    response = api_as(owner_a).patch(
        f"{URL}{config.uuid}/", {"enabled": False, "secrets": {"webhook_secret": ""}}, format="json"
    )
    assert response.status_code == 200, response.data
    config.refresh_from_db()
    assert config.enabled is False
    assert provider_secret(config=config, name="webhook_secret") == "old"


def test_a_secret_the_provider_does_not_take_is_refused(api_as, owner_a):
    response = api_as(owner_a).post(
        URL, {"provider": "sandbox", "secrets": {"api_key": "sk_x"}}, format="json"
    )
    assert response.status_code == 400
    assert not ProviderConfig.objects.exists()


def test_the_same_provider_twice_is_refused(api_as, owner_a, org_a):
    provider_config_save(organisation=org_a, provider="sandbox", actor=None)
    response = api_as(owner_a).post(URL, {"provider": "sandbox"}, format="json")
    assert response.status_code == 400
    assert "already" in str(response.data)


def test_managers_and_accountants_cannot_change_providers(api_as, manager_a1, accountant_a, org_a):
    config = provider_config_save(organisation=org_a, provider="sandbox", actor=None)
    assert api_as(accountant_a).get(f"{URL}{config.uuid}/").status_code == 200
    assert api_as(accountant_a).patch(f"{URL}{config.uuid}/", {"enabled": False}).status_code == 403
    # A manager limited to some properties does not see organisation-wide settings at all.
    assert api_as(manager_a1).get(f"{URL}{config.uuid}/").status_code == 404


def test_another_organisations_provider_is_not_found(api_as, owner_b, org_a):
    config = provider_config_save(organisation=org_a, provider="sandbox", actor=None)
    assert api_as(owner_b).get(f"{URL}{config.uuid}/").status_code == 404
    assert api_as(owner_b).patch(f"{URL}{config.uuid}/", {"enabled": False}).status_code == 404

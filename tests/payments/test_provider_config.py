import pytest
from django.core.exceptions import ValidationError

from accounts.selectors import scope_for_user
from payments.models import ProviderConfig
from payments.services import provider_config_save, provider_secret
from prepaid.audit.models import AuditLog


@pytest.fixture
def stripe_config(org_a, owner_a):
    return provider_config_save(
        organisation=org_a,
        provider="stripe",
        actor=owner_a,
        settings={"publishable_key": "pk_test_1"},
        secrets={"api_key": "sk_test_1", "webhook_secret": "whsec_1"},
    )


def test_saved_secrets_are_sealed_and_readable_by_the_provider(stripe_config):
    stored = ProviderConfig.objects.get(pk=stripe_config.pk)
    assert "sk_test_1" not in str(stored.sealed_secrets)
    assert provider_secret(config=stored, name="api_key") == "sk_test_1"
    assert stored.secrets_set() == {"api_key": True, "webhook_secret": True}


def test_a_blank_secret_keeps_the_stored_one(stripe_config, org_a, owner_a):
    provider_config_save(
        organisation=org_a,
        provider="stripe",
        actor=owner_a,
        settings={"publishable_key": "pk_test_2"},
        secrets={"api_key": "", "webhook_secret": "whsec_2"},
    )
    stored = ProviderConfig.objects.get(pk=stripe_config.pk)
    assert stored.settings == {"publishable_key": "pk_test_2"}
    assert provider_secret(config=stored, name="api_key") == "sk_test_1"
    assert provider_secret(config=stored, name="webhook_secret") == "whsec_2"


def test_the_audit_log_says_which_secrets_changed_but_never_their_values(
    stripe_config, org_a, owner_a
):
    provider_config_save(
        organisation=org_a, provider="stripe", actor=owner_a, secrets={"webhook_secret": "whsec_9"}
    )
    entries = AuditLog.objects.filter(action__startswith="payments.provider.").order_by("pk")
    assert [entry.action for entry in entries] == [
        "payments.provider.create",
        "payments.provider.update",
    ]
    assert entries[1].after["secrets_changed"] == ["webhook_secret"]
    assert "whsec" not in str([(entry.before, entry.after) for entry in entries])


def test_a_secret_the_provider_does_not_take_is_refused(org_a, owner_a):
    with pytest.raises(ValidationError, match="no secret named password"):
        provider_config_save(
            organisation=org_a, provider="alipay", actor=owner_a, secrets={"password": "x"}
        )
    assert not ProviderConfig.objects.exists()


def test_an_unknown_provider_is_refused(org_a, owner_a):
    with pytest.raises(ValidationError, match="Choose one of"):
        provider_config_save(organisation=org_a, provider="paypal", actor=owner_a)


def test_a_missing_secret_is_a_clear_error(org_a, owner_a):
    config = provider_config_save(organisation=org_a, provider="sandbox", actor=owner_a)
    with pytest.raises(ValidationError, match="no webhook_secret configured"):
        provider_secret(config=config, name="webhook_secret")


def test_organisations_see_only_their_own_providers(stripe_config, org_b, owner_b):
    provider_config_save(organisation=org_b, provider="stripe", actor=owner_b)
    mine = ProviderConfig.objects.for_scope(scope_for_user(user=owner_b))
    assert list(mine.values_list("organisation", flat=True)) == [org_b.pk]

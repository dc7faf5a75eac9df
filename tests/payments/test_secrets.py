import pytest

from payments.secrets import SecretUnavailable, seal, unseal


def test_a_sealed_secret_is_not_stored_in_the_clear_and_unseals_to_itself():
    stored = seal("sk_test_51Hx")
    assert "sk_test_51Hx" not in stored
    assert unseal(stored) == "sk_test_51Hx"


def test_an_environment_reference_is_stored_as_is_and_read_when_used(monkeypatch):
    stored = seal("env:PREPAID_TEST_STRIPE_KEY")
    assert stored == "env:PREPAID_TEST_STRIPE_KEY"
    monkeypatch.setenv("PREPAID_TEST_STRIPE_KEY", "sk_live_from_env")
    assert unseal(stored) == "sk_live_from_env"


def test_an_unset_environment_reference_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("PREPAID_TEST_MISSING", raising=False)
    with pytest.raises(SecretUnavailable, match="PREPAID_TEST_MISSING is not set"):
        unseal("env:PREPAID_TEST_MISSING")


def test_a_secret_sealed_under_another_key_cannot_be_read(settings):
    stored = seal("whsec_abc")
    settings.SECRET_KEY = "a-different-secret-key"
    with pytest.raises(SecretUnavailable, match="another key"):
        unseal(stored)


def test_an_explicit_key_takes_precedence_over_the_derived_one(settings):
    derived = seal("whsec_abc")
    settings.PAYMENTS_SECRETS_KEY = "0" * 43 + "="
    with pytest.raises(SecretUnavailable):
        unseal(derived)
    assert unseal(seal("whsec_abc")) == "whsec_abc"

"""Online payments: an intent is credited exactly once from a verified notification."""

import time
from decimal import Decimal

import pytest

from billing.models import LedgerAccount, LedgerTransaction, Receipt
from billing.verification import ledger_violations
from payments.models import PaymentIntent, ProviderEvent
from payments.services import PaymentError, intent_create, provider_for
from tests import factories
from tests.payments.conftest import sandbox_event

pytestmark = pytest.mark.django_db

Status = PaymentIntent.Status


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def test_a_new_intent_waits_at_the_sandbox_page(make_intent):
    intent = make_intent("50.00")
    assert intent.status == Status.PENDING
    assert intent.redirect_url == f"/payments/sandbox/{intent.reference}/"
    assert intent.return_url == f"/portal/payments/{intent.reference}/"
    assert intent.currency == intent.property.currency


def test_a_verified_success_credits_the_wallet_from_the_provider_clearing_account(
    make_intent, deliver, account
):
    intent = make_intent("50.00")
    response = deliver(sandbox_event(intent))
    assert response.status_code == 200
    intent.refresh_from_db()
    assert intent.status == Status.SUCCEEDED
    assert intent.transaction_id == f"sbx_{intent.reference[:8]}"
    assert _balance(account) == Decimal("50.00")
    receipt = intent.receipt
    assert receipt.channel == "sandbox"
    assert receipt.amount == Decimal("50.00")
    postings = {
        (p.ledger_account.kind, p.ledger_account.channel): p.amount
        for p in receipt.transaction.postings.select_related("ledger_account")
    }
    assert postings == {
        ("wallet", ""): Decimal("50.00"),
        ("clearing", "sandbox"): Decimal("-50.00"),
    }
    assert receipt.transaction.idempotency_key == f"payment:{intent.uuid}"
    assert not any(ledger_violations().values())


def test_a_replayed_notification_credits_once(make_intent, deliver, account):
    intent = make_intent("50.00")
    body = sandbox_event(intent)
    for _ in range(5):
        assert deliver(body).status_code == 200
    assert _balance(account) == Decimal("50.00")
    assert Receipt.objects.filter(account=account).count() == 1
    assert ProviderEvent.objects.filter(intent=intent).count() == 1


def test_a_second_success_event_for_the_same_payment_credits_nothing_more(
    make_intent, deliver, account
):
    intent = make_intent("50.00")
    deliver(sandbox_event(intent, event_id="evt_1"))
    deliver(sandbox_event(intent, event_id="evt_2"))
    assert _balance(account) == Decimal("50.00")
    assert ProviderEvent.objects.get(event_id="evt_2").outcome == "ignored"


def test_a_failure_after_the_success_changes_nothing(make_intent, deliver, account):
    intent = make_intent("50.00")
    deliver(sandbox_event(intent, event_id="evt_ok"))
    deliver(sandbox_event(intent, event_type="payment.failed", event_id="evt_late_fail"))
    intent.refresh_from_db()
    assert intent.status == Status.SUCCEEDED
    assert _balance(account) == Decimal("50.00")


def test_a_late_success_after_expiry_still_credits(make_intent, deliver, account):
    intent = make_intent("50.00")
    deliver(sandbox_event(intent, event_type="payment.expired", event_id="evt_exp"))
    intent.refresh_from_db()
    assert intent.status == Status.EXPIRED
    deliver(sandbox_event(intent, event_id="evt_paid"))
    intent.refresh_from_db()
    assert intent.status == Status.SUCCEEDED
    assert _balance(account) == Decimal("50.00")


def test_a_declined_payment_fails_and_credits_nothing(make_intent, deliver, account):
    intent = make_intent("50.00")
    deliver(sandbox_event(intent, event_type="payment.failed"))
    intent.refresh_from_db()
    assert intent.status == Status.FAILED
    assert _balance(account) == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": "500.00"}, "amount"),
        ({"amount": "49.99"}, "amount"),
        ({"currency": "USD"}, "amount"),
        ({"reference": "0" * 32}, "unknown_intent"),
    ],
)
def test_a_notification_that_does_not_match_its_intent_is_rejected(
    make_intent, deliver, account, change, reason
):
    intent = make_intent("50.00")
    response = deliver(sandbox_event(intent, **change))
    assert response.status_code == 400
    assert _balance(account) == 0
    event = ProviderEvent.objects.get()
    assert (event.outcome, event.reason) == ("rejected", reason)


def test_a_tampered_body_is_rejected_as_a_bad_signature(make_intent, deliver, sandbox_config):
    intent = make_intent("50.00")
    body = sandbox_event(intent)
    headers = provider_for(sandbox_config).sign(body)
    response = deliver(body.replace(b"50.00", b"90.00"), headers=headers)
    assert response.status_code == 400
    assert ProviderEvent.objects.get().reason == "signature"
    assert LedgerTransaction.objects.filter(kind="topup").count() == 0


def test_a_missing_signature_is_rejected(make_intent, deliver):
    intent = make_intent("50.00")
    assert deliver(sandbox_event(intent), headers={}).status_code == 400
    assert ProviderEvent.objects.get().reason == "signature"


def test_a_stale_signature_is_rejected(make_intent, deliver, sandbox_config):
    intent = make_intent("50.00")
    body = sandbox_event(intent)
    headers = provider_for(sandbox_config).sign(body, timestamp=int(time.time()) - 301)
    assert deliver(body, headers=headers).status_code == 400
    assert ProviderEvent.objects.get().reason == "stale"


def test_a_malformed_body_is_rejected(deliver):
    assert deliver(b'{"id": "evt_x", "type": "payment.succeeded"').status_code == 400
    assert ProviderEvent.objects.get().reason == "malformed"


def test_a_notification_for_another_organisations_config_finds_no_intent(
    make_intent, deliver, org_b
):
    from payments.services import provider_config_save

    intent = make_intent("50.00")
    other = provider_config_save(
        organisation=org_b, provider="sandbox", actor=None, secrets={"webhook_secret": "other"}
    )
    response = deliver(sandbox_event(intent), config=other)
    assert response.status_code == 400
    assert ProviderEvent.objects.get().reason == "unknown_intent"
    intent.refresh_from_db()
    assert intent.status == Status.PENDING


def test_a_webhook_for_an_unknown_config_is_not_found(client, sandbox_config):
    response = client.post(
        f"/payments/webhooks/stripe/{sandbox_config.uuid}/", data=b"{}", content_type="x"
    )
    assert response.status_code == 404


def test_a_caller_sending_many_rejected_notifications_is_slowed_down(
    deliver, settings, sandbox_config
):
    from django.core.cache import cache

    cache.clear()
    settings.PAYMENTS_WEBHOOK_REJECTIONS_PER_MINUTE = 3
    answers = [deliver(b"{}", headers={}).status_code for _ in range(5)]
    assert answers == [400, 400, 400, 429, 429]
    assert ProviderEvent.objects.count() == 3
    cache.clear()


def test_a_signed_notification_is_not_held_back_by_the_callers_rejections(
    make_intent, deliver, settings, account
):
    from django.core.cache import cache

    cache.clear()
    settings.PAYMENTS_WEBHOOK_REJECTIONS_PER_MINUTE = 1
    assert [deliver(b"{}", headers={}).status_code for _ in range(2)] == [400, 429]
    intent = make_intent("50.00")
    assert deliver(sandbox_event(intent)).status_code == 200
    assert _balance(account) == Decimal("50.00")
    cache.clear()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "more than zero"),
        ("-5", "more than zero"),
        ("0.001", "minor units"),
        ("6000", "largest top-up"),
    ],
)
def test_a_bad_amount_is_refused_before_any_checkout(make_intent, amount, message):
    with pytest.raises(PaymentError, match=message):
        make_intent(amount)
    assert PaymentIntent.objects.count() == 0


def test_an_amount_that_would_overfill_the_wallet_is_refused(make_intent, account):
    factories.TopupLimitsFactory(property=account.unit.property, max_balance=Decimal(100))
    factories.TopupFactory(account=account, amount=Decimal(80))
    with pytest.raises(PaymentError, match="at most 20"):
        make_intent("50.00")


def test_a_closed_account_cannot_start_a_payment(make_intent, account):
    from accounts.models import Account

    Account.objects.filter(pk=account.pk).update(status="closed", closed_at=account.opened_at)
    account.refresh_from_db()
    with pytest.raises(PaymentError, match="open accounts"):
        make_intent("50.00")


def test_another_organisations_provider_cannot_be_used(account, org_b):
    from payments.services import provider_config_save

    other = provider_config_save(
        organisation=org_b, provider="sandbox", actor=None, secrets={"webhook_secret": "x"}
    )
    with pytest.raises(PaymentError, match="not available"):
        intent_create(
            account=account,
            config=other,
            amount=Decimal(10),
            actor=None,
            notify_url="http://127.0.0.1:9/",
            return_url="/",
        )

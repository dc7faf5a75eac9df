"""Auto top-up against the loopback Stripe API: a fall below the threshold charges the saved card
once, through a payment intent credited like any other, within the monthly cap, and three
declines in a row turn it off."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from celery.signals import before_task_publish
from django.core.exceptions import ValidationError

from billing.models import LedgerAccount
from billing.services import charges_post
from billing.verification import ledger_violations
from notifications.models import Notification
from payments.autotopup import (
    ATTEMPT_LEASE,
    autotopup_attempt,
    autotopup_disable,
    autotopup_enable,
    autotopup_evaluate,
    autotopup_setup_start,
    autotopup_sweep,
)
from payments.models import AutoTopup, AutoTopupAttempt, PaymentIntent, ProviderEvent
from payments.services import notification_receive, provider_config_save
from prepaid.audit.models import AuditLog
from prepaid.celery import app
from tests import factories
from tests.payments.fakes import stripe as fake_stripe
from tests.payments.fakes.stripe import FakeStripe, payment_intent_object, signed_event
from tests.payments.test_provider_webhooks import _post

pytestmark = pytest.mark.django_db

Status = AutoTopupAttempt.Status


def _balance(account) -> Decimal:
    return LedgerAccount.objects.get(pk=account.wallet_id).balance


def _charge(account, amount: str) -> None:
    charges_post(charges=[factories.ChargeInputFactory.build(account=account, net=Decimal(amount))])


def _fall_to(account, target: str) -> AutoTopupAttempt | None:
    """Charge the balance down to `target`, then evaluate as the task enqueued would."""
    _charge(account, str(_balance(account) - Decimal(target)))
    return autotopup_evaluate(account_id=account.pk)


def _rearm(account) -> None:
    """A counter top-up above the threshold, then a small charge that sees it there."""
    factories.TopupFactory(account=account, amount=Decimal("40.00"))
    _charge(account, "1.00")
    autotopup_evaluate(account_id=account.pk)


@pytest.fixture
def api():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def config(org_a, api):
    return provider_config_save(
        organisation=org_a,
        provider="stripe",
        actor=None,
        settings=fake_stripe.provider_settings(api.url),
        secrets=fake_stripe.provider_secrets(),
    )


def _enable(account, config, **overrides) -> AutoTopup:
    fields = {
        "amount": Decimal("50.00"),
        "threshold": Decimal("20.00"),
        "monthly_cap": Decimal("150.00"),
        **overrides,
    }
    return autotopup_enable(account=account, config=config, actor=None, **fields)


@pytest.fixture
def saved(account, config, api) -> AutoTopup:
    """Auto top-up on, the card saved by paying a first 50.00 through Stripe Checkout."""
    factories.TopupFactory(account=account, amount=Decimal("100.00"))
    _enable(account, config)
    intent = autotopup_setup_start(
        account=account,
        amount=Decimal("50.00"),
        actor=None,
        notify_url="https://example.test/notify",
        return_url="/portal/payments/{reference}/",
    )
    session = api.pay(intent.provider_reference, payment_method="pm_card_visa")
    body, headers = signed_event("checkout.session.completed", session)
    assert notification_receive(config=config, body=body, headers=headers).status == 200
    assert _balance(account) == Decimal("150.00")
    return AutoTopup.objects.get(account=account)


def _card_known(topup: AutoTopup, api: FakeStripe) -> None:
    """The saved card as an earlier attempt would have read it from Stripe."""
    setup = api.payment_intents[topup.setup_intent.transaction_id]
    AutoTopup.objects.filter(pk=topup.pk).update(
        customer_ref=setup["customer"], payment_method_ref=setup["payment_method"]
    )


@pytest.fixture
def run_tasks():
    # The worker's side runs in-process; everything it calls is real (database, loopback API).
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def published():
    sent = []

    def record(sender=None, headers=None, **kwargs):
        sent.append((sender, headers["argsrepr"]))

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


class TestOptingIn:
    def test_enabling_is_audited(self, account, config, owner_a):
        topup = autotopup_enable(
            account=account,
            config=config,
            amount=Decimal("50.00"),
            threshold=Decimal("20.00"),
            monthly_cap=Decimal("200.00"),
            actor=owner_a,
        )
        entry = AuditLog.objects.get(action="payments.autotopup.enable")
        assert (entry.actor, entry.object_id, entry.before) == (owner_a, str(topup.uuid), None)
        assert entry.after["amount"] == "50.00"
        assert (topup.enabled, topup.currency) == (True, "CNY")

    def test_changing_it_records_before_and_after(self, account, config):
        _enable(account, config)
        _enable(account, config, amount=Decimal("80.00"))
        entry = AuditLog.objects.filter(action="payments.autotopup.enable").latest("pk")
        assert (entry.before["amount"], entry.after["amount"]) == ("50.00", "80.00")
        assert AutoTopup.objects.count() == 1

    def test_disabling_is_audited_with_its_reason(self, account, config, owner_a):
        _enable(account, config)
        autotopup_disable(account=account, actor=owner_a, reason="Tenant asked")
        entry = AuditLog.objects.get(action="payments.autotopup.disable")
        assert (entry.actor, entry.reason) == (owner_a, "Tenant asked")
        topup = AutoTopup.objects.get()
        assert (topup.enabled, topup.disabled_reason) == (False, "Tenant asked")

    def test_disabling_needs_a_reason(self, account, config):
        _enable(account, config)
        with pytest.raises(ValidationError) as error:
            autotopup_disable(account=account, actor=None, reason="  ")
        assert "reason" in error.value.message_dict

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"amount": Decimal("0")}, "amount"),
            ({"amount": Decimal("-5.00")}, "amount"),
            ({"amount": Decimal("6000.00"), "monthly_cap": Decimal("9000")}, "amount"),
            ({"amount": Decimal("50.005")}, "amount"),
            ({"threshold": Decimal("-1.00")}, "threshold"),
            ({"threshold": Decimal("19990.00")}, "threshold"),
            ({"monthly_cap": Decimal("49.99")}, "monthly_cap"),
        ],
    )
    def test_invalid_amounts_are_refused_by_field(self, account, config, overrides, field):
        with pytest.raises(ValidationError) as error:
            _enable(account, config, **overrides)
        assert field in error.value.message_dict
        assert not AutoTopup.objects.exists()
        assert not AuditLog.objects.filter(action__startswith="payments.autotopup").exists()

    def test_only_a_stripe_account_can_save_a_card(self, account, org_a):
        sandbox = provider_config_save(
            organisation=org_a, provider="sandbox", actor=None, secrets={"webhook_secret": "x"}
        )
        with pytest.raises(ValidationError) as error:
            _enable(account, sandbox)
        assert "config" in error.value.message_dict

    def test_the_setup_checkout_saves_the_card_for_later(self, saved, api):
        (form,) = (request.form for request in api.requests_to("create_session"))
        assert form["customer_creation"] == "always"
        assert form["payment_intent_data"]["setup_future_usage"] == "off_session"
        assert saved.setup_intent.is_credited()


class TestCharging:
    def test_a_fall_below_the_threshold_charges_the_saved_card_once(
        self, saved, account, api, run_tasks, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            _charge(account, "135.00")
        attempt = AutoTopupAttempt.objects.get()
        assert (attempt.status, attempt.balance, attempt.amount) == (
            Status.SUCCEEDED,
            Decimal("15.00"),
            Decimal("50.00"),
        )
        assert _balance(account) == Decimal("65.00")
        (charge,) = api.requests_to("create_payment_intent")
        assert charge.idempotency_key == f"charge:{attempt.intent.reference}"
        saved.refresh_from_db()
        assert (charge.form["customer"], charge.form["payment_method"]) == (
            saved.customer_ref,
            "pm_card_visa",
        )
        assert saved.customer_ref.startswith("cus_")
        assert attempt.intent.status == PaymentIntent.Status.SUCCEEDED
        assert attempt.intent.transaction_id == attempt.intent.provider_reference
        # The card was read from Stripe once and kept.
        assert saved.payment_method_ref == "pm_card_visa"
        assert not any(ledger_violations().values())

    def test_replayed_checks_and_attempts_charge_nothing_more(self, saved, account, api):
        attempt = _fall_to(account, "15.00")
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.SUCCEEDED
        # The task delivered again, and the evaluation repeated, as after a lost ack.
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.SUCCEEDED
        assert autotopup_evaluate(account_id=account.pk) is None
        _charge(account, "1.00")
        assert autotopup_evaluate(account_id=account.pk) is None
        assert len(api.requests_to("create_payment_intent")) == 1
        assert AutoTopupAttempt.objects.count() == 1
        assert _balance(account) == Decimal("64.00")

    def test_the_check_enqueues_the_evaluation_after_commit_only_when_due(
        self, saved, account, published, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            _charge(account, "10.00")
        assert published == []
        with django_capture_on_commit_callbacks(execute=True):
            _charge(account, "125.00")
        ours = [task for task in published if task[0].startswith("payments.")]
        assert ours == [("payments.tasks.autotopup_evaluate_task", f"({account.pk},)")]

    def test_a_succeeded_webhook_credits_once(self, saved, account, api, client):
        _card_known(saved, api)
        # Stripe's answer to our own question is lost: the webhook is what credits.
        api.errors["payment_intent"] = (500, {"type": "api_error", "message": "down"})
        attempt = _fall_to(account, "15.00")
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.PENDING
        assert _balance(account) == Decimal("15.00")
        del api.errors["payment_intent"]
        attempt.refresh_from_db()
        intent = api.payment_intents[attempt.intent.provider_reference]
        body, headers = signed_event("payment_intent.succeeded", intent)
        for _ in range(3):
            assert _post(client, saved.config, body, headers).status_code == 200
        assert _balance(account) == Decimal("65.00")
        assert autotopup_sweep() == {"settled": 1, "resumed": 0}
        attempt.refresh_from_db()
        assert attempt.status == Status.SUCCEEDED
        assert not any(ledger_violations().values())

    def test_no_saved_card_skips_and_tells_the_tenant(self, account, config, api):
        factories.TopupFactory(account=account, amount=Decimal("100.00"))
        _enable(account, config)
        attempt = _fall_to(account, "15.00")
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.SKIPPED
        assert api.requests_to("create_payment_intent") == []
        notice = Notification.objects.get(event="autotopup_skipped", channel="email")
        assert "No card is saved" in notice.body

    def test_a_disabled_auto_topup_is_not_charged(
        self, saved, account, api, published, django_capture_on_commit_callbacks
    ):
        autotopup_disable(account=account, actor=None, reason="Tenant asked")
        with django_capture_on_commit_callbacks(execute=True):
            _charge(account, "135.00")
        assert [task for task in published if task[0].startswith("payments.")] == []
        assert autotopup_evaluate(account_id=account.pk) is None
        assert api.requests_to("create_payment_intent") == []
        assert _balance(account) == Decimal("15.00")

    def test_an_attempt_turned_off_before_it_runs_is_not_charged(self, saved, account, api):
        attempt = _fall_to(account, "15.00")
        autotopup_disable(account=account, actor=None, reason="Tenant asked")
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.SKIPPED
        assert api.requests_to("create_payment_intent") == []

    def test_a_stalled_attempt_is_resumed_by_the_sweep(self, saved, account, published):
        attempt = _fall_to(account, "15.00")
        with time_machine.travel(datetime.now(UTC) + ATTEMPT_LEASE + timedelta(minutes=1)):
            assert autotopup_sweep() == {"settled": 0, "resumed": 1}
        assert published == [("payments.tasks.autotopup_attempt_task", f"({attempt.pk},)")]


class TestMonthlyCap:
    def test_the_cap_holds_within_a_local_month_and_resets_at_local_midnight(
        self, saved, account, api
    ):
        # 31 January, 23:40 in Shanghai; still 31 January in UTC when the month turns there.
        late_january = datetime(2027, 1, 31, 15, 40, tzinfo=UTC)
        with time_machine.travel(late_january, tick=False):
            first = _fall_to(account, "15.00")
            assert autotopup_attempt(attempt_id=first.pk) == Status.SUCCEEDED
            _rearm(account)
            second = _fall_to(account, "15.00")
            assert autotopup_attempt(attempt_id=second.pk) == Status.SUCCEEDED
            _rearm(account)
            third = _fall_to(account, "15.00")
            assert autotopup_attempt(attempt_id=third.pk) == Status.SUCCEEDED
            _rearm(account)
            capped = _fall_to(account, "15.00")
        assert capped.status == Status.SKIPPED
        assert "monthly cap" in capped.reason
        assert Notification.objects.filter(
            event="autotopup_skipped", idempotency_key=f"autotopup:{saved.uuid}:{capped.crossing}"
        ).exists()
        with time_machine.travel(datetime(2027, 1, 31, 16, 5, tzinfo=UTC), tick=False):
            _rearm(account)
            february = _fall_to(account, "15.00")
            assert autotopup_attempt(attempt_id=february.pk) == Status.SUCCEEDED
        assert len(api.requests_to("create_payment_intent")) == 4
        assert not any(ledger_violations().values())


class TestFailures:
    def test_three_declines_in_a_row_turn_it_off_and_tell_the_tenant(self, saved, account, api):
        api.declined.add("pm_card_visa")
        statuses = []
        for crossing in range(3):
            if crossing:
                _rearm(account)
            attempt = _fall_to(account, "15.00")
            statuses.append(autotopup_attempt(attempt_id=attempt.pk))
        assert statuses == [Status.FAILED] * 3
        topup = AutoTopup.objects.get()
        assert (topup.enabled, topup.failures) == (False, 3)
        assert topup.disabled_reason == "3 charges in a row failed."
        entry = AuditLog.objects.get(action="payments.autotopup.disable")
        assert entry.actor is None
        reasons = set(AutoTopupAttempt.objects.values_list("reason", flat=True))
        assert all("card_declined" in reason for reason in reasons)
        told = dict(
            Notification.objects.filter(channel="email").values_list("idempotency_key", "event")
        )
        # Each decline is told; the last one says auto top-up is off now.
        assert {key: told[key] for key in told if key.startswith("autotopup:")} == {
            f"autotopup:{topup.uuid}:1": "autotopup_failed",
            f"autotopup:{topup.uuid}:2": "autotopup_failed",
            f"autotopup:{topup.uuid}:3": "autotopup_disabled",
        }
        # Nothing was credited for the declines, and nothing more is attempted.
        assert _balance(account) == Decimal("15.00")
        _rearm(account)
        assert _fall_to(account, "15.00") is None
        assert len(api.requests_to("create_payment_intent")) == 3
        assert not any(ledger_violations().values())

    def test_a_success_clears_the_count(self, saved, account, api):
        api.declined.add("pm_card_visa")
        attempt = _fall_to(account, "15.00")
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.FAILED
        api.declined.clear()
        _rearm(account)
        attempt = _fall_to(account, "15.00")
        assert autotopup_attempt(attempt_id=attempt.pk) == Status.SUCCEEDED
        assert AutoTopup.objects.get().failures == 0

    def test_an_off_session_failure_webhook_fails_the_payment_without_credit(
        self, saved, account, api, client
    ):
        _card_known(saved, api)
        api.errors["payment_intent"] = (500, {"type": "api_error", "message": "down"})
        attempt = _fall_to(account, "15.00")
        autotopup_attempt(attempt_id=attempt.pk)
        attempt.refresh_from_db()
        failed = payment_intent_object(
            reference=attempt.intent.reference,
            amount=5000,
            status="requires_payment_method",
            intent_id=attempt.intent.provider_reference,
            last_payment_error=fake_stripe.card_error(),
        )
        body, headers = signed_event("payment_intent.payment_failed", failed)
        assert _post(client, saved.config, body, headers).status_code == 200
        assert autotopup_sweep()["settled"] == 1
        attempt.refresh_from_db()
        assert attempt.status == Status.FAILED
        assert AutoTopup.objects.get().failures == 1
        assert _balance(account) == Decimal("15.00")
        assert ProviderEvent.objects.filter(status="failed").count() == 1

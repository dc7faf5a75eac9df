"""Importing settlement files and matching them: one crafted file per format, each matching
status, nothing half-imported, re-imports that change nothing, matching again, resolution
audited, and the settlement reports tied to the ledger."""

from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.db.models import Sum

from billing.models import LedgerAccount, LedgerTransaction, Posting
from billing.services import topup_record, transaction_reverse
from payments.models import (
    ReconciliationItem,
    SettlementImport,
    SettlementLine,
)
from payments.providers.base import Checkout, Notification
from payments.reconciliation import services
from payments.services import intent_create, notification_apply
from prepaid.audit.models import AuditLog
from prepaid.scoping import Role, Scope
from reports.catalogue import REPORTS
from reports.settlement import ReconciliationFiltersForm
from tests.payments.staff_urls_reconciliation import (
    fixture,
    owner_scope,
    paid_intent,
    provider_config,
    refunded,
)

pytestmark = pytest.mark.django_db
Status = ReconciliationItem.Status
DAY = date(2026, 9, 1)


def at(hour, minute=0, zone=UTC):
    return datetime(2026, 9, 1, hour, minute, tzinfo=zone)


def statuses(settlement_import):
    """Each item as (line row or None, status, detail), in file order then ours."""
    items = settlement_import.items.select_related("line").order_by("line__row", "occurred_at")
    return [(item.line.row if item.line else None, item.status, item.detail) for item in items]


WX_PAID, WX_SHORT = "4200000001202609010000000001", "4200000001202609010000000002"
WX_REFUND = "50300000012026090100000001"
ALIPAY_PAID = "2026090122001400001000000001"


def expect_fee(org, source, percent, fixed=None):
    values = {"fee_percent": Decimal(percent), "fee_fixed": Decimal(fixed) if fixed else None}
    services.settlement_profile_save(organisation=org, source=source, actor=None, values=values)


def commit(org, source, data, owner=None, **kwargs):
    return services.settlement_import_commit(
        scope=owner_scope(org), actor=owner, source=source, data=data, file_name="file.csv",
        **kwargs,
    )  # fmt: skip


@pytest.fixture
def stripe(org_a):
    return provider_config(org_a, "stripe")


@pytest.fixture
def stripe_day(account, stripe, owner_a):
    """A day of Stripe payments: one to match, one paid short, one with a high fee, one refunded
    in part, one the file lacks, and one on the next day (outside the file's period)."""
    with time_machine.travel(at(9, 10)):
        paid = paid_intent(account, stripe, "50.00", transaction_id="pi_paid")
    with time_machine.travel(at(10, 55)):
        short = paid_intent(account, stripe, "35.00", transaction_id="pi_short")
    with time_machine.travel(at(11, 25)):
        costly = paid_intent(account, stripe, "40.00", transaction_id="pi_costly")
    with time_machine.travel(at(14)):
        lacking = paid_intent(account, stripe, "15.00", transaction_id="pi_lacking")
    with time_machine.travel(at(15, 40)):
        refund = refunded(paid, "10.00", reference="rf-stripe-1",
                          provider_refund_id="re_1Refunded", actor=owner_a)  # fmt: skip
    with time_machine.travel(datetime(2026, 9, 2, 10, tzinfo=UTC)):
        paid_intent(account, stripe, "25.00", transaction_id="pi_next_day")
    data = fixture(
        "stripe_balance.csv",
        paid=paid.reference,
        short=short.reference,
        costly=costly.reference,
        refund=refund.reference,
    )
    return {"paid": paid, "short": short, "costly": costly, "lacking": lacking,
            "refund": refund, "data": data}  # fmt: skip


def test_a_stripe_file_is_matched_line_by_line_and_against_our_payments(stripe_day, org_a):
    expect_fee(org_a, "stripe", "2.9", "0.30")
    settlement_import, created = commit(org_a, "stripe", stripe_day["data"])
    assert created
    assert statuses(settlement_import) == [
        (2, Status.MATCHED, ""),
        (3, Status.AMOUNT_MISMATCH, "amount"),
        (4, Status.FEE_DIFFERENCE, "fee"),
        (5, Status.MISSING_OURS, "unknown"),
        (6, Status.MATCHED, ""),
        (7, Status.INFORMATION, "account_fee"),
        (8, Status.INFORMATION, "payout"),
        (None, Status.MISSING_PROVIDER, "no_line"),
    ]
    items = {item.status: item for item in settlement_import.items.all()}
    assert items[Status.MISSING_PROVIDER].intent == stripe_day["lacking"]
    assert items[Status.AMOUNT_MISMATCH].our_amount == Decimal("35.00")
    assert items[Status.AMOUNT_MISMATCH].provider_amount == Decimal("30.00")
    fee = items[Status.FEE_DIFFERENCE]
    assert (fee.fee, fee.expected_fee) == (Decimal("5.00"), Decimal("1.46"))
    refund_item = settlement_import.items.get(line__row=6)
    assert refund_item.refund == stripe_day["refund"]
    assert refund_item.property == stripe_day["paid"].property
    assert settlement_import.items.get(line__row=5).property is None
    assert settlement_import.period_start == datetime(2026, 9, 1, tzinfo=UTC)
    assert settlement_import.period_end == datetime(2026, 9, 2, tzinfo=UTC)


def test_without_an_expected_fee_the_fee_charged_is_only_reported(stripe_day, org_a):
    settlement_import, _ = commit(org_a, "stripe", stripe_day["data"])
    costly = settlement_import.items.get(line__row=4)
    assert costly.status == Status.MATCHED
    assert (costly.fee, costly.expected_fee) == (Decimal("5.00"), None)


def test_a_wechat_bill_matches_by_transaction_id_and_refund_id(account, org_a, owner_a):
    wechat = provider_config(org_a, "wechat")
    expect_fee(org_a, "wechat", "0.6")
    shanghai = account.unit.property.zone
    with time_machine.travel(at(9, 15, shanghai)):
        paid = paid_intent(account, wechat, "100.00", transaction_id=WX_PAID)
    with time_machine.travel(at(10, 2, shanghai)):
        short = paid_intent(account, wechat, "85.00", transaction_id=WX_SHORT)
    with time_machine.travel(at(15, 20, shanghai)):
        refund = refunded(paid, "20.00", reference="rf-wechat-1",
                          provider_refund_id=WX_REFUND, actor=owner_a)  # fmt: skip
    # The bill's own out_trade_no column is not ours here: the transaction id is enough.
    data = fixture("wechat_tradebill.csv", paid="x", short="y", refund=refund.reference)
    settlement_import, _ = commit(org_a, "wechat", data)
    assert statuses(settlement_import) == [
        (2, Status.MATCHED, ""),
        (3, Status.AMOUNT_MISMATCH, "amount"),
        (4, Status.MISSING_OURS, "unknown"),
        (5, Status.MATCHED, ""),
    ]
    assert settlement_import.items.get(line__row=2).intent == paid
    assert settlement_import.items.get(line__row=3).intent == short
    assert settlement_import.items.get(line__row=5).refund == refund
    assert settlement_import.items.get(line__row=2).expected_fee == Decimal("0.60")


def test_a_gbk_alipay_bill_ties_its_fee_lines_to_the_payment(account, org_a, owner_a):
    alipay = provider_config(org_a, "alipay")
    expect_fee(org_a, "alipay", "0.6")
    shanghai = account.unit.property.zone
    with time_machine.travel(at(9, 15, shanghai)):
        paid = paid_intent(account, alipay, "100.00", transaction_id=ALIPAY_PAID)
    with time_machine.travel(at(10, 2, shanghai)):
        short = paid_intent(account, alipay, "85.00")
    with time_machine.travel(at(12, 0, shanghai)):
        lacking = paid_intent(account, alipay, "12.00")
    with time_machine.travel(at(15, 20, shanghai)):
        refund = refunded(paid, "20.00", reference="rf-alipay-1", actor=owner_a)
    data = fixture("alipay_account_bill_gbk.csv", "gbk", paid=paid.reference,
                   short=short.reference, refund=refund.reference)  # fmt: skip
    settlement_import, _ = commit(org_a, "alipay", data)
    assert settlement_import.encoding == "gbk"
    assert statuses(settlement_import) == [
        (6, Status.MATCHED, ""),
        (7, Status.MATCHED, "payment_fee"),
        (8, Status.AMOUNT_MISMATCH, "amount"),
        (9, Status.MISSING_OURS, "unknown"),
        (10, Status.MATCHED, ""),
        (11, Status.INFORMATION, "payout"),
        (None, Status.MISSING_PROVIDER, "no_line"),
    ]
    payment = settlement_import.items.get(line__row=6)
    # The fee line's 0.60 is the payment's fee, as expected.
    assert (payment.fee, payment.expected_fee) == (Decimal("0.60"), Decimal("0.60"))
    assert settlement_import.items.get(line__row=10).refund == refund
    assert settlement_import.items.get(line=None).intent == lacking


@pytest.fixture
def bank_profile(org_a):
    return services.settlement_profile_save(
        organisation=org_a,
        source="bank",
        actor=None,
        values={
            "currency": "CNY", "time_zone": "Asia/Shanghai", "encoding": "auto",
            "delimiter": ";", "skip_rows": 2, "date_column": "Date", "date_format": "%d.%m.%Y",
            "amount_column": "Paid in", "debit_column": "Paid out",
            "reference_column": "Reference", "description_column": "Description",
            "balance_column": "Balance", "decimal_separator": ",",
        },
    )  # fmt: skip


def bank_topup(account, amount, reference, key):
    return topup_record(account=account, amount=Decimal(amount), channel="bank", actor=None,
                        idempotency_key=key, reference=reference).receipt  # fmt: skip


def test_a_bank_statement_matches_the_references_typed_at_the_counter(account, org_a, bank_profile):
    shanghai = account.unit.property.zone
    with time_machine.travel(at(10, 0, shanghai)):
        paid = bank_topup(account, "1250.00", "tx-0901-a", "bank-1")
        bank_topup(account, "95.00", "TX-0901-B", "bank-2")
        lacking = bank_topup(account, "40.00", "TX-0901-C", "bank-3")
        topup_record(account=account, amount=Decimal(30), channel="cash", actor=None,
                     idempotency_key="cash-1")  # fmt: skip
    data = fixture("bank_statement.csv", paid="TX-0901-A", short="tx-0901-b")
    settlement_import, _ = commit(org_a, "bank", data)
    assert statuses(settlement_import) == [
        (4, Status.MATCHED, ""),
        (5, Status.AMOUNT_MISMATCH, "amount"),
        (6, Status.MISSING_OURS, "unknown"),
        (7, Status.INFORMATION, "money_out"),
        (None, Status.MISSING_PROVIDER, "no_line"),
    ]
    assert settlement_import.items.get(line__row=4).receipt == paid
    assert settlement_import.items.get(line=None).receipt == lacking


def test_a_bank_statement_needs_its_columns_set_up_first(org_a):
    report = services.settlement_import_check(
        scope=owner_scope(org_a), source="bank", data=fixture("bank_statement.csv"),
        file_name="bank.csv",
    )  # fmt: skip
    assert "Set up the bank statement's columns" in report.errors[0].message


def test_a_provider_the_organisation_does_not_use_cannot_be_imported(org_a):
    report = services.settlement_import_check(
        scope=owner_scope(org_a), source="wechat", data=fixture("wechat_tradebill.csv"),
        file_name="bill.csv",
    )  # fmt: skip
    assert "takes no payments through" in report.errors[0].message


def test_the_dry_run_reports_what_the_commit_would_find_and_writes_nothing(stripe_day, org_a):
    report = services.settlement_import_check(
        scope=owner_scope(org_a), source="stripe", data=stripe_day["data"], file_name="b.csv"
    )
    assert report.clean
    assert report.counts() == Counter({Status.MATCHED: 3, Status.INFORMATION: 2,
                                       Status.AMOUNT_MISMATCH: 1, Status.MISSING_OURS: 1,
                                       Status.MISSING_PROVIDER: 1})  # fmt: skip
    assert SettlementImport.objects.count() == 0
    assert SettlementLine.objects.count() == 0
    assert ReconciliationItem.objects.count() == 0


def test_a_file_with_any_bad_line_imports_nothing(stripe, org_a):
    with pytest.raises(services.ImportRejected) as rejected:
        commit(org_a, "stripe", fixture("stripe_bad_amounts.csv"))
    assert len(rejected.value.report.errors) == 4
    assert SettlementImport.objects.count() == 0
    assert SettlementLine.objects.count() == 0
    with pytest.raises(services.ImportRejected):
        commit(org_a, "stripe", fixture("stripe_duplicates.csv"))
    assert SettlementLine.objects.count() == 0


def test_importing_the_same_file_again_changes_nothing(stripe_day, org_a, owner_a):
    first, created = commit(org_a, "stripe", stripe_day["data"], owner_a)
    again, created_again = commit(org_a, "stripe", stripe_day["data"], owner_a)
    assert created
    assert not created_again
    assert again == first
    assert SettlementImport.objects.count() == 1
    assert SettlementLine.objects.count() == 7
    assert AuditLog.objects.filter(action="reconciliation.import").count() == 1
    report = services.settlement_import_check(
        scope=owner_scope(org_a), source="stripe", data=stripe_day["data"], file_name="b.csv"
    )
    assert report.existing == first


def test_lines_an_earlier_file_brought_are_skipped_and_its_missing_items_cleared(
    stripe_day, org_a, account, stripe
):
    """A later export overlapping the first: its known lines are skipped, its new line claims
    the payment the first lacked."""
    first, _ = commit(org_a, "stripe", stripe_day["data"])
    lacking = stripe_day["lacking"]
    assert first.items.filter(status=Status.MISSING_PROVIDER, intent=lacking).exists()
    extra = (
        f"txn_1Late,charge,ch_1Late,15.00,0.74,14.26,cny,2026-09-01 14:00,2026-09-03 00:00,"
        f"A1,{lacking.reference},\r\n"
    )
    second, created = commit(org_a, "stripe", stripe_day["data"] + extra.encode())
    assert created
    assert (second.lines_count, second.skipped_count) == (1, 7)
    assert statuses(second) == [(9, Status.MATCHED, "")]
    assert not first.items.filter(status=Status.MISSING_PROVIDER).exists()


def test_an_unmatched_item_is_resolved_with_a_note_audited(stripe_day, org_a, owner_a):
    settlement_import, _ = commit(org_a, "stripe", stripe_day["data"])
    item = settlement_import.items.get(line__row=3)
    resolved = services.item_resolve(item=item, actor=owner_a, note="  Tenant paid the rest  ")
    assert resolved.resolved_by == owner_a
    assert resolved.resolution_note == "Tenant paid the rest"
    assert resolved.resolved_at is not None
    entry = AuditLog.objects.get(action="reconciliation.resolve")
    assert entry.actor == owner_a
    assert entry.reason == "Tenant paid the rest"
    assert entry.object_id == str(item.uuid)
    assert entry.property_id == item.property_id
    assert entry.after["resolution_note"] == "Tenant paid the rest"
    # A double submit is the same resolution; a different one is refused.
    services.item_resolve(item=item, actor=owner_a, note="Tenant paid the rest")
    assert AuditLog.objects.filter(action="reconciliation.resolve").count() == 1
    with pytest.raises(services.ValidationError):
        services.item_resolve(item=item, actor=owner_a, note="Something else")


def test_a_resolution_needs_a_note_and_an_unmatched_item(stripe_day, org_a, owner_a):
    settlement_import, _ = commit(org_a, "stripe", stripe_day["data"])
    with pytest.raises(services.ValidationError):
        services.item_resolve(item=settlement_import.items.get(line__row=3), actor=owner_a,
                              note="   ")  # fmt: skip
    with pytest.raises(services.ValidationError):
        services.item_resolve(item=settlement_import.items.get(line__row=2), actor=owner_a,
                              note="Fine")  # fmt: skip
    assert not AuditLog.objects.filter(action="reconciliation.resolve").exists()


def test_matching_again_keeps_resolved_items_as_resolved(stripe_day, org_a, owner_a):
    settlement_import, _ = commit(org_a, "stripe", stripe_day["data"])
    missing = settlement_import.items.get(status=Status.MISSING_PROVIDER)
    services.item_resolve(item=missing, actor=owner_a, note="Paid out next day")
    unresolved = settlement_import.items.get(line__row=3)
    # Our payment is corrected to what the provider took: matching again now matches it.
    type(unresolved.intent).objects.filter(pk=unresolved.intent_id).update(amount=Decimal(30))
    changes = services.reconciliation_match(settlement_import=settlement_import, actor=owner_a)
    assert changes["updated"] == 1
    unresolved.refresh_from_db()
    missing.refresh_from_db()
    assert unresolved.status == Status.MATCHED
    assert (missing.status, missing.resolution_note) == (Status.MISSING_PROVIDER,
                                                         "Paid out next day")  # fmt: skip
    assert AuditLog.objects.filter(action="reconciliation.match").count() == 1


def test_a_payment_the_provider_has_but_we_never_credited_is_missing_on_our_side(
    account, org_a, stripe
):
    # The checkout was opened; no notification came.
    with time_machine.travel(at(9, 10)):
        intent = intent_create(
            account=account, config=stripe, amount=Decimal(50), actor=None,
            notify_url="http://127.0.0.1:9/", return_url="/r/",
            open_checkout=lambda provider, request: Checkout(provider_reference="cs_1"),
        )  # fmt: skip
    settlement_import, _ = commit(org_a, "stripe", fixture("stripe_balance.csv",
                                                           paid=intent.reference))  # fmt: skip
    item = settlement_import.items.get(line__row=2)
    assert (item.status, item.detail, item.intent) == (Status.MISSING_OURS, "not_credited", intent)
    with time_machine.travel(at(9, 20)):
        notification_apply(
            config=stripe,
            notification=Notification(event_id="evt_late", reference=intent.reference,
                                      status="succeeded", amount=Decimal("50.00"),
                                      currency="CNY", transaction_id="pi_late"),
            source="webhook",
        )  # fmt: skip
    services.reconciliation_match(settlement_import=settlement_import, actor=None)
    item.refresh_from_db()
    assert (item.status, item.detail) == (Status.MATCHED, "")


def test_the_import_is_audited_with_its_file_and_findings(stripe_day, org_a, owner_a):
    settlement_import, _ = commit(org_a, "stripe", stripe_day["data"], owner_a)
    entry = AuditLog.objects.get(action="reconciliation.import")
    assert entry.actor == owner_a
    assert entry.object_id == str(settlement_import.uuid)
    assert entry.after["sha256"] == settlement_import.sha256
    assert entry.after["lines"] == 7
    assert entry.after["statuses"][Status.MATCHED] == 3


def test_settings_changes_are_audited(org_a, owner_a):
    services.settlement_profile_save(organisation=org_a, source="stripe", actor=owner_a,
                                     values={"fee_percent": Decimal("2.9")})  # fmt: skip
    services.settlement_profile_save(organisation=org_a, source="stripe", actor=owner_a,
                                     values={"fee_percent": Decimal("3.1")})  # fmt: skip
    actions = list(AuditLog.objects.order_by("id").values_list("action", flat=True))
    assert actions[-2:] == ["reconciliation.settings.create", "reconciliation.settings.update"]
    with pytest.raises(services.ValidationError):
        services.settlement_profile_save(organisation=org_a, source="stripe", actor=owner_a,
                                         values={"date_column": "Date"})  # fmt: skip


# Reports ------------------------------------------------------------------------------------------


def report_filters(report, prop, scope, end="2026-09-01", **extra):
    form = report.form_class(
        {"property": str(prop.uuid), "start": "2026-09-01", "end": end, **extra},
        scope=scope,
    )
    assert form.is_valid(), form.errors
    return form.filters()


def test_the_reconciliation_report_lists_a_propertys_items_by_status(stripe_day, org_a):
    commit(org_a, "stripe", stripe_day["data"])
    report = REPORTS["reconciliation"]
    prop = stripe_day["paid"].property
    scope = owner_scope(org_a)
    # Through the next day: the refund line is after midnight in Shanghai.
    filters = report_filters(report, prop, scope, end="2026-09-02")
    rows = list(report.rows(filters))
    # The unknown line, the billing fee and the payout belong to no property.
    assert report.count(filters) == len(rows) == 5
    assert [row[2] for row in rows].count("Matched") == 3
    assert rows[0][5:9] == ("ch_1PaidMatched", stripe_day["paid"].reference, Decimal("50.00"),
                            Decimal("50.00"))  # fmt: skip
    mismatched = report_filters(report, prop, scope, "2026-09-02", status="amount_mismatch")
    assert [row[2] for row in report.rows(mismatched)] == ["Amount mismatch"]
    with_unknown = report_filters(report, prop, scope, "2026-09-02", unassigned="on")
    assert report.count(with_unknown) == 8
    assert list(report.rows(filters, offset=2, limit=2)) == rows[2:4]
    totals = report.totals(filters)
    assert totals[7] == sum(row[7] for row in rows if row[7] is not None)


def test_only_staff_who_see_every_property_may_include_lines_of_no_property(
    org_a, property_a1, manager_a1
):
    everyone = ReconciliationFiltersForm(scope=owner_scope(org_a))
    assert "unassigned" in everyone.fields
    limited = Scope(organisation=org_a, role=Role.MANAGER,
                    property_ids=frozenset({property_a1.pk}))  # fmt: skip
    assert "unassigned" not in ReconciliationFiltersForm(scope=limited).fields


def _channel_book_movement(prop, start, end):
    """Minus what the channel books moved through top-ups, refunds paid out and reversals of
    top-ups: money in, net."""
    total = Posting.objects.filter(
        ledger_account__property=prop,
        ledger_account__kind__in=[LedgerAccount.Kind.CASH, LedgerAccount.Kind.CLEARING],
        transaction__effective_at__gte=start,
        transaction__effective_at__lt=end,
        transaction__kind__in=[LedgerTransaction.Kind.TOPUP, LedgerTransaction.Kind.REFUND_PAYOUT,
                               LedgerTransaction.Kind.REVERSAL],
    ).aggregate(total=Sum("amount"))["total"]  # fmt: skip
    return -(total or Decimal(0))


def test_payments_by_channel_ties_to_the_ledger_and_takes_fees_from_the_files(
    stripe_day, org_a, account, owner_a
):
    prop = account.unit.property
    shanghai = prop.zone
    with time_machine.travel(at(11, 0, shanghai)):
        cash = topup_record(account=account, amount=Decimal(100), channel="cash", actor=None,
                            idempotency_key="cash-a").receipt  # fmt: skip
        topup_record(account=account, amount=Decimal(60), channel="cash", actor=None,
                     idempotency_key="cash-b")  # fmt: skip
        transaction_reverse(original=cash.transaction, actor=owner_a, reason="Wrong account",
                            idempotency_key="reverse-cash-a")  # fmt: skip
    commit(org_a, "stripe", stripe_day["data"])
    report = REPORTS["payments-by-channel"]
    filters = report_filters(report, prop, owner_scope(org_a))
    rows = list(report.rows(filters))
    assert report.count(filters) == len(rows)
    by_channel = {row[1]: row for row in rows}
    # Stripe on 1 September, Shanghai time: four payments (the fifth is on the 2nd), the
    # refund, and the fees of the lines matched to them.
    stripe_row = by_channel["Stripe"]
    assert stripe_row[0] == DAY
    assert stripe_row[2:] == (4, Decimal("140.00"), Decimal("10.00"), Decimal("0.00"),
                              Decimal("7.92"), Decimal("122.08"))  # fmt: skip
    assert by_channel["Cash"][2:] == (2, Decimal("160.00"), Decimal("0.00"), Decimal("100.00"),
                                      Decimal("0.00"), Decimal("60.00"))  # fmt: skip
    money_in = sum(row[3] - row[4] - row[5] for row in rows)
    assert money_in == _channel_book_movement(prop, filters.start_at, filters.end_at)
    totals = report.totals(filters)
    assert totals[2:] == [6, Decimal("300.00"), Decimal("10.00"), Decimal("100.00"),
                          Decimal("7.92"), Decimal("182.08")]  # fmt: skip
    chart = report.chart(filters)
    assert chart.labels == ["2026-09-01"]
    assert {series.label for series in chart.series} == {"Cash", "Stripe"}


def test_report_rows_stream_from_the_database(stripe_day, org_a):
    commit(org_a, "stripe", stripe_day["data"])
    prop = stripe_day["paid"].property
    for slug in ("reconciliation", "payments-by-channel"):
        report = REPORTS[slug]
        rows = report.rows(report_filters(report, prop, owner_scope(org_a)))
        assert iter(rows) is rows  # a generator, not a list built up front
        assert next(rows)

"""Monthly tenant statements: figures that tie to the daily freeze and the ledger, the PDF in
English and Chinese, the staff pages, and the month-end email sent once per account and month
to the tenants who are told by email."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from io import BytesIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Q, Sum
from django.urls import reverse
from pypdf import PdfReader

from accounts.lifecycle import move_out
from billing.charging import charge_new_readings
from billing.freeze import freeze_day
from billing.models import DailyFreeze, LedgerTransaction, Posting
from meters.models import Meter, Reading
from meters.services import readings_ingest
from notifications.events import Event
from notifications.models import ChannelPreference, Notification
from notifications.services import notification_send
from reports.statement_pdf import statement_filename, statement_pdf
from reports.statements import (
    NoStatement,
    ended_month,
    monthly_statement,
    monthly_statements_send,
    statement_key,
    summary_rows,
)
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST, LAST = date(2026, 9, 29), date(2026, 11, 1)
OCTOBER = date(2026, 10, 1)
TxnKind = LedgerTransaction.Kind


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


def at(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI)


def days(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def used_on(day: date) -> Decimal:
    """What the meter measures each day: 1 to 4 kWh."""
    return Decimal(day.day % 4 + 1)


def metered_account(prop, **tenant):
    meter = factories.MeterFactory(unit__property=prop, installed_at=at(FIRST))
    account = factories.AccountFactory(
        unit=meter.unit, opened_at=at(FIRST), **{f"tenant__{k}": v for k, v in tenant.items()}
    )
    return meter, account


def read_and_charge(meters, through: date = LAST):
    """Each meter read at every local midnight and charged an hour later, as polling would."""
    registers = {meter.pk: Decimal(1000) for meter in meters}
    for day in days(FIRST, through):
        with time_machine.travel(at(day, 1), tick=False):
            for meter in meters:
                readings_ingest(
                    meters=Meter.objects.filter(pk=meter.pk),
                    rows=[
                        {
                            "serial": meter.serial,
                            "taken_at": at(day),
                            "register": registers[meter.pk],
                        }
                    ],
                    source=Reading.Source.HTTP,
                )
                registers[meter.pk] += used_on(day)
            charge_new_readings()


def topup(account, amount: str, day: date):
    with time_machine.travel(at(day, 12), tick=False):
        return factories.TopupFactory(account=account, amount=Decimal(amount))


def freeze(prop, through: date):
    for day in days(FIRST, through):
        freeze_day(property=prop, day=day)


@pytest.fixture
def tariff(property_a1):
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Residential",
        actor=None,
        version={
            "effective_from": datetime(2025, 1, 1, tzinfo=UTC),
            "kind": "flat",
            "flat_price": "1.00",
            "tax_rate": "0.13",
            "standing_charge_per_day": "2.40",
        },
    )


@pytest.fixture
def october(property_a1, tariff):
    """A tenant read, charged and topped up from 29 September to 1 November, with every day
    through 31 October frozen."""
    meter, account = metered_account(property_a1, name="Ada", email="ada@example.test")
    read_and_charge([meter])
    topup(account, "100.00", FIRST)
    topup(account, "50.00", date(2026, 10, 5))
    topup(account, "100.00", date(2026, 10, 20))
    freeze(property_a1, date(2026, 10, 31))
    return account


def booked_before(account, moment: datetime):
    """The wallet's postings booked before a moment: by creation, standing charges by the end
    of the day they charge (as the freeze books them)."""
    return Posting.objects.filter(ledger_account_id=account.wallet_id).filter(
        (~Q(transaction__kind=TxnKind.STANDING_CHARGE) & Q(transaction__created_at__lt=moment))
        | Q(transaction__kind=TxnKind.STANDING_CHARGE, transaction__effective_at__lte=moment)
    )


def total(postings) -> Decimal:
    return postings.aggregate(total=Sum("amount"))["total"] or Decimal(0)


# The figures -------------------------------------------------------------------------------------


def test_the_statement_adds_up_from_opening_to_closing_balance(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    assert (statement.first_day, statement.last_day, statement.complete) == (
        OCTOBER,
        date(2026, 10, 31),
        True,
    )
    movement = statement.topups - statement.charges - statement.refunds + statement.adjustments
    assert statement.opening_balance + movement == statement.closing_balance
    assert len(statement.days) == 31
    for before, after in zip(statement.days, statement.days[1:], strict=False):
        assert after.opening_balance == before.closing_balance


def test_the_balances_tie_to_the_daily_freeze_and_the_ledger(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    september_30 = DailyFreeze.objects.get(account=october, day=date(2026, 9, 30))
    assert statement.opening_balance == september_30.closing_balance
    assert statement.opening_balance == total(booked_before(october, at(OCTOBER)))
    assert statement.closing_balance == total(booked_before(october, at(date(2026, 11, 1))))
    charged = booked_before(october, at(date(2026, 11, 1))).exclude(
        pk__in=booked_before(october, at(OCTOBER))
    )
    charges = charged.filter(transaction__kind__in=[TxnKind.CHARGE, TxnKind.STANDING_CHARGE])
    assert statement.charges == -total(charges)
    assert statement.charges > 0


def test_the_top_ups_are_the_months_receipts(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    assert statement.topups == Decimal("150.00")
    assert [line.amount for line in statement.topup_lines] == [Decimal("50.00"), Decimal("100.00")]
    assert statement.topup_lines[0].number == f"{october.unit.property.code}-00000002"


def test_the_consumption_is_what_the_meter_measured_each_day(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    expected = [used_on(day) for day in days(OCTOBER, date(2026, 10, 31))]
    assert [row.electricity for row in statement.days] == expected
    assert statement.electricity == sum(expected)
    assert statement.water == 0


def test_a_month_not_frozen_to_its_end_is_marked_incomplete(october, property_a1):
    freeze_day(property=property_a1, day=date(2026, 11, 1))
    statement = monthly_statement(account=october, month=date(2026, 11, 1))
    assert (statement.first_day, statement.last_day, statement.complete) == (
        date(2026, 11, 1),
        date(2026, 11, 1),
        False,
    )


def test_a_month_without_frozen_days_has_no_statement(october):
    with pytest.raises(NoStatement):
        monthly_statement(account=october, month=date(2026, 8, 1))


def test_the_summary_rows_are_signed_as_they_moved_the_balance(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    rows = {row.key: row.amount for row in summary_rows(statement)}
    assert rows["topups"] == Decimal("150.00")
    assert rows["energy"] + rows["standing"] == -statement.charges
    assert rows["opening"] + rows["topups"] + rows["energy"] + rows["standing"] == rows["closing"]


# The PDF -----------------------------------------------------------------------------------------


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)


def test_the_pdf_renders_in_english(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    pdf = statement_pdf(statement=statement, language="en")
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "Monthly statement: October 2026" in text
    assert "CN¥150.00" in text
    assert f"{october.unit.property.code}-00000003" in text
    assert statement_filename(statement=statement).endswith("-2026-10.pdf")


def test_the_pdf_renders_in_chinese(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    pdf = statement_pdf(statement=statement, language="zh-hans")
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "2026年10月" in text
    assert "¥150.00" in text
    assert "CN¥" not in text


def test_the_same_statement_renders_to_the_same_bytes(october):
    statement = monthly_statement(account=october, month=OCTOBER)
    assert statement_pdf(statement=statement, language="en") == statement_pdf(
        statement=statement, language="en"
    )


# Staff pages -------------------------------------------------------------------------------------


def test_staff_see_the_months_statement_and_download_it(october, owner_a, client):
    client.force_login(owner_a)
    page = client.get(reverse("reports:statements", kwargs={"account_id": october.uuid}))
    assert page.status_code == 200
    assert b'data-month="2026-10"' in page.content
    assert b'data-testid="row-closing"' in page.content
    september = client.get(
        reverse("reports:statements", kwargs={"account_id": october.uuid}),
        {"month": "2026-09"},
        HTTP_HX_REQUEST="true",
    )
    assert b'data-month="2026-09"' in september.content
    assert b"<h1>" not in september.content
    pdf = client.get(
        reverse("reports:statement", kwargs={"account_id": october.uuid, "month": "2026-10"})
    )
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    chinese = client.get(
        reverse("reports:statement", kwargs={"account_id": october.uuid, "month": "2026-10"}),
        {"language": "zh-hans"},
    )
    assert "2026年10月" in pdf_text(chinese.content)


def test_a_tenancy_without_frozen_days_says_it_has_no_statement_yet(property_a1, owner_a, client):
    account = factories.AccountFactory(unit__property=property_a1)
    client.force_login(owner_a)
    page = client.get(reverse("reports:statements", kwargs={"account_id": account.uuid}))
    assert page.status_code == 200
    assert b'data-testid="no-statements"' in page.content
    assert b'data-testid="statement"' not in page.content


@pytest.mark.parametrize("month", ["2026-08", "2026-13", "october"])
def test_a_month_without_a_statement_is_not_found(october, owner_a, client, month):
    client.force_login(owner_a)
    url = reverse("reports:statement", kwargs={"account_id": october.uuid, "month": month})
    assert client.get(url).status_code == 404


def test_a_manager_of_another_property_does_not_find_the_statement(october, manager_a1, client):
    account = factories.DailyFreezeFactory(
        account__unit__property=factories.PropertyFactory(organisation=october.tenant.organisation)
    ).account
    client.force_login(manager_a1)
    assert (
        client.get(reverse("reports:statements", kwargs={"account_id": account.uuid})).status_code
        == 404
    )
    assert (
        client.get(reverse("reports:statements", kwargs={"account_id": october.uuid})).status_code
        == 200
    )


# Sending at month end ----------------------------------------------------------------------------


def statements_sent(**lookup) -> list[Notification]:
    return list(Notification.objects.filter(event=Event.MONTHLY_STATEMENT, **lookup))


@pytest.fixture
def tenants(property_a1, tariff):
    """Four tenants read through October: one told by email, one who turned email off, one
    without an address, and one who moved out; the property frozen through 31 October."""
    told = metered_account(property_a1, name="Told", email="told@example.test")
    silent = metered_account(property_a1, name="No email", email="off@example.test")
    ChannelPreference.objects.create(tenant=silent[1].tenant, email=False)
    unreachable = metered_account(property_a1, name="No address", email="")
    gone = factories.AccountFactory(
        unit__property=property_a1,
        opened_at=at(FIRST),
        tenant__name="Gone",
        tenant__email="gone@example.test",
    )
    read_and_charge([told[0], silent[0], unreachable[0]])
    with time_machine.travel(at(date(2026, 10, 20), 10), tick=False):
        move_out(
            account=gone,
            actor=None,
            idempotency_key="gone",
            moved_out_at=at(date(2026, 10, 20), 10),
        )
    freeze(property_a1, date(2026, 10, 31))
    return told[1], silent[1], unreachable[1], gone


def test_the_month_ends_once_its_last_day_is_frozen():
    assert ended_month(date(2026, 10, 31)) == OCTOBER
    assert ended_month(date(2026, 10, 30)) == date(2026, 9, 1)
    assert ended_month(date(2026, 11, 1)) == OCTOBER
    assert ended_month(None) is None


def test_each_tenant_told_by_email_gets_the_months_statement_once(tenants):
    from reports.tasks import monthly_statements_task

    told = tenants[0]
    assert monthly_statements_task() == 1
    assert monthly_statements_task() == 0
    assert monthly_statements_send() == 0
    sent = statements_sent()
    assert {notification.account_id for notification in sent} == {told.pk}
    [email] = statements_sent(channel="email")
    assert email.idempotency_key == statement_key(account=told, month=OCTOBER)
    assert email.recipient == "told@example.test"
    assert "October 2026" in email.subject
    assert email.context["month_start_at"] == "2026-09-30T16:00:00+00:00"
    assert email.context["account_uuid"] == str(told.uuid)


def test_no_statement_is_sent_before_the_months_last_day_is_frozen(property_a1, tariff):
    meter, _account = metered_account(property_a1, name="Early", email="early@example.test")
    read_and_charge([meter], through=date(2026, 10, 31))
    freeze(property_a1, date(2026, 10, 30))
    # September is over and frozen (its last two days were the tenancy's first); October not.
    assert monthly_statements_send() == 1
    assert {row.idempotency_key[-7:] for row in statements_sent()} == {"2026-09"}
    freeze_day(property=property_a1, day=date(2026, 10, 31))
    assert monthly_statements_send() == 1
    assert {row.idempotency_key[-7:] for row in statements_sent()} == {"2026-09", "2026-10"}


def test_the_statement_email_carries_the_pdf_in_the_tenants_language(
    property_a1, tariff, mailoutbox
):
    meter, account = metered_account(
        property_a1, name="王伟", email="wang@example.test", preferred_language="zh-hans"
    )
    read_and_charge([meter])
    freeze(property_a1, date(2026, 10, 31))
    monthly_statements_send()
    [email] = statements_sent(channel="email")
    assert email.subject.startswith("2026年10月账单")
    assert notification_send(notification_id=email.pk) == Notification.Status.SENT
    [(filename, content, mimetype)] = mailoutbox[0].attachments
    assert (filename, mimetype) == (
        f"statement-{property_a1.code}-{account.unit.name}-2026-10.pdf",
        "application/pdf",
    )
    assert content.startswith(b"%PDF")
    assert "2026年10月" in pdf_text(content)

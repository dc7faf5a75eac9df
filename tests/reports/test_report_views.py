"""The report pages: the list of reports by role, one report's filters and defaults, its zone,
currency and formatted values, the chart, the htmx table fifty rows a page with its totals, bad
ranges refused with a clear message, and a constant number of queries."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from billing.models import DailyFreeze
from prepaid.scoping import Capability
from reports.catalogue import REPORTS
from reports.models import ExportJob
from tests import factories
from tests.reports import FreezeReport, SyntheticReport

pytestmark = pytest.mark.django_db

# 20 January 2026, 18:00 in Shanghai.
NOW = datetime(2026, 1, 20, 10, tzinfo=UTC)


@pytest.fixture
def synthetic(monkeypatch):
    report = SyntheticReport()
    monkeypatch.setitem(REPORTS, report.slug, report)
    return report


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


class OwnersOnlyReport(SyntheticReport):
    slug = "owners-only"
    title = "Owners only"
    capability = Capability.ADMINISTER


@pytest.fixture
def owners_only(monkeypatch):
    report = OwnersOnlyReport()
    monkeypatch.setitem(REPORTS, report.slug, report)
    return report


def _url(report, **query):
    return reverse("reports:report", args=[report.slug]), query


def _get(client, report, headers=None, **query):
    url, query = _url(report, **query)
    return client.get(url, query, headers=headers or {})


# The list of reports ------------------------------------------------------------------------------


def test_the_index_lists_the_reports_an_accountant_may_open(
    client, accountant_a, synthetic, owners_only
):
    client.force_login(accountant_a)
    response = client.get(reverse("reports:index"))
    assert response.status_code == 200
    slugs = [report.slug for report in response.context["reports"]]
    assert "synthetic" in slugs
    assert "owners-only" not in slugs
    assert b"Rows made up as they are read." in response.content
    assert reverse("reports:report", args=["synthetic"]).encode() in response.content


def test_the_index_lists_every_report_for_an_owner(client, owner_a, synthetic, owners_only):
    client.force_login(owner_a)
    slugs = [report.slug for report in client.get(reverse("reports:index")).context["reports"]]
    assert {"synthetic", "owners-only"} <= set(slugs)


def test_the_index_lists_the_callers_own_recent_exports(
    client, accountant_a, owner_a, property_a1, synthetic
):
    mine = ExportJob.objects.create(
        organisation=property_a1.organisation, property=property_a1, requested_by=accountant_a,
        report="synthetic", filters={}, format="csv", language="en",
    )  # fmt: skip
    ExportJob.objects.create(
        organisation=property_a1.organisation, property=property_a1, requested_by=owner_a,
        report="synthetic", filters={}, format="xlsx", language="en",
    )  # fmt: skip
    client.force_login(accountant_a)
    response = client.get(reverse("reports:index"))
    assert [job.pk for job, _title in response.context["exports"]] == [mine.pk]
    assert reverse("reports:export-job", args=[mine.uuid]).encode() in response.content


# One report ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["owner_a", "manager_a1", "accountant_a"])
def test_every_role_opens_a_report_on_its_first_property_for_the_month_to_date(
    username, request, client, synthetic, property_a1, clock
):
    client.force_login(request.getfixturevalue(username))
    response = _get(client, synthetic)
    assert response.status_code == 200
    filters = response.context["filters"]
    assert filters.property == property_a1
    assert (filters.start, filters.end) == (date(2026, 1, 1), date(2026, 1, 20))
    page = response.content.decode()
    assert 'data-testid="report-zone">Asia/Shanghai<' in page
    assert 'data-testid="report-currency">CNY<' in page


def test_the_default_month_is_the_propertys_local_month(client, owner_a, synthetic):
    # 31 January 17:00 UTC is already 1 February in Shanghai.
    with time_machine.travel(datetime(2026, 1, 31, 17, tzinfo=UTC), tick=False):
        client.force_login(owner_a)
        filters = _get(client, synthetic).context["filters"]
    assert (filters.start, filters.end) == (date(2026, 2, 1), date(2026, 2, 1))


def test_values_are_formatted_by_their_kind_in_the_propertys_zone_and_currency(
    client, owner_a, synthetic, clock
):
    client.force_login(owner_a)
    page = _get(client, synthetic).content.decode()
    # Money with the currency, quantities to three places, percents, dates and local times.
    assert "CN¥1.25" in page
    assert "1.235" in page
    assert "12.5%" in page
    assert '<time datetime="2026-01-01">' in page
    assert '<time datetime="2026-01-05T08:30:00+08:00">' in page
    assert "名称" in page
    assert "金额" in page


def test_the_totals_row_closes_the_table(client, owner_a, synthetic, clock):
    client.force_login(owner_a)
    response = _get(client, synthetic)
    # 120 rows: counts 0..119 sum to 7140, amounts to 7140 + 30.
    assert [value for _kind, value in response.context["totals"]][1:3] == [7140, Decimal("7170")]
    page = response.content.decode()
    assert 'data-testid="report-totals"><th scope="row">Total</th>' in page
    assert "CN¥7,170.00" in page


def test_the_table_shows_fifty_rows_a_page_read_with_offset_and_limit(
    client, owner_a, synthetic, clock
):
    client.force_login(owner_a)
    first = _get(client, synthetic)
    assert len(first.context["rows"]) == 50
    assert first.context["page"].paginator.num_pages == 3
    synthetic.calls.clear()
    last = _get(client, synthetic, page="3")
    assert len(last.context["rows"]) == 20
    assert synthetic.calls == [(100, 20)]
    assert "Row 000119" in last.content.decode()
    assert "Row 000099" not in last.content.decode()


def test_htmx_pages_through_the_table_alone(client, owner_a, synthetic, clock):
    client.force_login(owner_a)
    response = _get(client, synthetic, headers={"HX-Request": "true"}, page="2", part="table")
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="report-table"')
    assert "Row 000050" in page
    assert "report-filters" not in page
    assert "report-chart" not in page
    # The links keep the filters and ask htmx for the table again.
    assert 'hx-get="?page=1&amp;part=table"' in page
    assert 'href="?page=3"' in page


def test_htmx_filters_swap_the_form_and_everything_below(client, owner_a, synthetic, clock):
    client.force_login(owner_a)
    response = _get(client, synthetic, headers={"HX-Request": "true"}, start="2026-01-02")
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="report-body"')
    assert "report-filters" in page
    assert "report-table" in page
    assert 'name="start" value="2026-01-02"' in page


def test_the_chart_is_drawn_from_a_json_data_element(client, owner_a, synthetic, clock):
    client.force_login(owner_a)
    page = _get(client, synthetic).content.decode()
    assert '<script id="report-chart-data" type="application/json">' in page
    assert '"values": ["1.50", null]' in page
    assert 'data-report-chart="report-chart-data"' in page
    assert "js/report-chart.js" in page


def test_a_report_without_a_chart_shows_none(client, owner_a, monkeypatch, clock):
    report = SyntheticReport(chart=False)
    monkeypatch.setitem(REPORTS, report.slug, report)
    client.force_login(owner_a)
    page = _get(client, report).content.decode()
    assert "report-chart-data" not in page
    assert "report-table" in page


def test_an_inverted_range_is_refused_with_a_clear_message_and_no_table(
    client, owner_a, synthetic, clock
):
    client.force_login(owner_a)
    response = _get(client, synthetic, start="2026-01-10", end="2026-01-01")
    page = response.content.decode()
    assert response.status_code == 400
    assert "The end date is before the start date." in page
    assert "report-table" not in page
    assert "report-export" not in page
    assert synthetic.calls == []


def test_htmx_gets_the_refused_filters_with_their_errors_to_swap_in(
    client, owner_a, synthetic, clock
):
    client.force_login(owner_a)
    response = _get(
        client, synthetic, headers={"HX-Request": "true"}, start="2026-01-10", end="2026-01-01"
    )
    page = response.content.decode()
    # htmx swaps only a successful answer.
    assert response.status_code == 200
    assert page.lstrip().startswith('<div id="report-body"')
    assert "The end date is before the start date." in page
    assert "report-table" not in page


def test_a_range_longer_than_a_year_is_refused(client, owner_a, synthetic, clock):
    client.force_login(owner_a)
    response = _get(client, synthetic, start="2024-01-01", end="2025-12-31")
    assert response.status_code == 400
    assert "Choose at most 366 days" in response.content.decode()
    assert "report-table" not in response.content.decode()


def test_an_unreadable_date_is_a_field_error(client, owner_a, synthetic, clock):
    client.force_login(owner_a)
    response = _get(client, synthetic, start="yesterday")
    assert response.status_code == 400
    assert "Enter a valid date." in response.content.decode()


def test_another_organisations_property_is_not_found(client, owner_a, synthetic, property_b1):
    client.force_login(owner_a)
    assert _get(client, synthetic, property=str(property_b1.uuid)).status_code == 404
    assert _get(client, synthetic, property="not-a-uuid").status_code == 404


def test_a_manager_cannot_report_on_an_unassigned_property(
    client, manager_a1, synthetic, property_a2
):
    client.force_login(manager_a1)
    assert _get(client, synthetic, property=str(property_a2.uuid)).status_code == 404


def test_an_unknown_report_is_not_found(client, owner_a):
    client.force_login(owner_a)
    assert client.get("/reports/no-such-report/").status_code == 404


def test_a_report_needing_a_capability_the_role_lacks_is_refused(client, accountant_a, owners_only):
    client.force_login(accountant_a)
    assert _get(client, owners_only).status_code == 403


def test_a_caller_without_properties_is_told_so(client, synthetic):
    organisation = factories.OrganisationFactory()
    owner = factories.UserFactory()
    from accounts import services

    services.membership_create(user=owner, organisation=organisation, role="owner", actor=None)
    client.force_login(owner)
    response = _get(client, synthetic)
    assert response.status_code == 200
    assert "There is no property to report on yet." in response.content.decode()


def test_the_export_buttons_carry_the_filters(client, owner_a, synthetic, property_a1, clock):
    client.force_login(owner_a)
    page = _get(client, synthetic, start="2026-01-03").content.decode()
    assert f'action="{reverse("reports:export", args=["synthetic"])}"' in page
    assert f'name="property" value="{property_a1.uuid}"' in page
    assert 'name="start" value="2026-01-03"' in page
    assert 'name="end" value="2026-01-20"' in page
    assert 'name="format" value="csv"' in page
    assert 'name="format" value="xlsx"' in page


# Queries ------------------------------------------------------------------------------------------


def _freeze_rows(prop, accounts: int, day: date):
    rows = []
    for number in range(accounts):
        account = factories.AccountFactory(unit__property=prop, unit__name=f"R{number:03d}")
        rows.append(
            DailyFreeze(
                account=account,
                property=prop,
                day=day,
                currency="CNY",
                opening_balance=Decimal("10.00"),
                topups=Decimal("5.00"),
                energy_net=Decimal("2.00"),
                energy_tax=Decimal("0.26"),
                standing_net=0,
                standing_tax=0,
                refunds=0,
                adjustments=0,
                closing_balance=Decimal("12.74"),
                electricity=Decimal("3.5"),
                water=0,
            )
        )
    DailyFreeze.objects.bulk_create(rows)


@pytest.mark.parametrize("accounts", [3, 60])
def test_a_report_page_makes_the_same_queries_however_many_rows(
    accounts, client, owner_a, property_a1, monkeypatch, django_assert_max_num_queries, clock
):
    report = FreezeReport()
    monkeypatch.setitem(REPORTS, report.slug, report)
    _freeze_rows(property_a1, accounts, date(2026, 1, 10))
    client.force_login(owner_a)
    with django_assert_max_num_queries(12):
        response = _get(client, report)
    assert response.context["page"].paginator.count == accounts
    assert len(response.context["rows"]) == min(accounts, 50)
    assert "CN¥12.74" in response.content.decode()

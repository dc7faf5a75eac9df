"""The tariffs pages: the list, a tariff's versions, the editor and the what-if comparison."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from prepaid.audit.models import AuditLog
from tariffs.models import Tariff, TariffVersion
from tariffs.services import tariff_create, tariff_version_add
from tests import factories
from tests.tariffs.test_whatif import charged_november

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
FLAT = {"kind": "flat", "flat_price": "1.00"}
WHOLE_DAY = [
    {"name": "peak", "start": "08:00", "end": "22:00", "price": "1.20"},
    {"name": "valley", "start": "22:00", "end": "08:00", "price": "0.40"},
]


@pytest.fixture
def december():
    """Early December 2026, when November's readings and charges (`charged_november`) are past."""
    with time_machine.travel(datetime(2026, 12, 7, 2, 0, tzinfo=UTC), tick=True):
        yield


def make_tariff(prop, utility="electricity", version=FLAT, name="Residential"):
    return tariff_create(
        property=prop,
        utility=utility,
        name=name,
        actor=None,
        version={"effective_from": datetime(2025, 1, 1, tzinfo=UTC), **version},
    )


def in_days(days):
    """A local moment `days` from now, as the editor's datetime-local field sends it."""
    moment = (timezone.now() + timedelta(days=days)).astimezone(SHANGHAI)
    return moment.replace(second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


def rows(prefix, entries):
    data = {f"{prefix}-TOTAL_FORMS": str(len(entries)), f"{prefix}-INITIAL_FORMS": "0"}
    for index, entry in enumerate(entries):
        for name, value in entry.items():
            data[f"{prefix}-{index}-{name}"] = "" if value is None else value
    return data


def editor(kind="flat", *, bands=(), weekday=(), weekend=None, holiday=None, **fields):
    data = {
        "kind": kind,
        "shown_kind": kind,
        "effective_from": in_days(10),
        "flat_price": "1.20" if kind == "flat" else "",
        "standing_charge_per_day": "0",
        "tax_percent": "0",
        "tax_mode": "exclusive",
        "action": "save",
        **fields,
    }
    if bands:
        data.update(rows("band", bands))
    if weekday:
        data.update(rows("weekday", weekday))
        data.update(rows("weekend", weekday if weekend is None else weekend))
        data.update(rows("holiday", weekday if holiday is None else holiday))
    return data


def add_version(client, tariff, data, **headers):
    return client.post(reverse("tariffs:version-add", args=[tariff.uuid]), data, **headers)


# The list and a tariff's page -------------------------------------------------------------------


def test_the_list_shows_each_propertys_tariffs_in_plain_words(
    client, owner_a, property_a1, property_a2
):
    tariff = make_tariff(property_a1, version={**FLAT, "tax_rate": "0.13"})
    tariff_version_add(
        tariff=tariff,
        actor=None,
        effective_from=timezone.now() + timedelta(days=30),
        kind="tiered",
        bands=[{"limit": "100", "price": "1.00"}, {"limit": None, "price": "1.50"}],
    )
    make_tariff(property_a2, utility="water", version={**FLAT, "flat_price": "3.5"}, name="Water")
    meter = factories.MeterFactory(unit__property=property_a1)
    factories.AccountFactory(unit=meter.unit)
    client.force_login(owner_a)
    page = client.get(reverse("tariffs:list")).content.decode()
    assert "A One" in page
    assert "A Two" in page
    assert "One price: CN¥1.00 per kWh." in page
    assert "Tax at 13% is added on top." in page
    assert "From 100 to" not in page  # bands start above 0
    assert "From 0 to 100 kWh a month: CN¥1.00 per kWh" in page
    assert "Above 100 kWh a month: CN¥1.50 per kWh" in page
    assert "One price: CN¥3.50 per m³." in page
    assert "1 unit" in page
    assert "1 open account" in page
    assert 'data-testid="create-tariff"' in page


def test_the_list_makes_as_many_queries_for_ten_properties_as_for_three(
    client, owner_a, org_a, django_assert_max_num_queries
):
    def with_properties(count):
        for _number in range(count):
            prop = factories.PropertyFactory(organisation=org_a)
            make_tariff(prop, version={"kind": "tou", "periods": _all_days(WHOLE_DAY)})
            meter = factories.MeterFactory(unit__property=prop)
            factories.AccountFactory(unit=meter.unit)

    client.force_login(owner_a)
    with_properties(3)
    with django_assert_max_num_queries(15):
        assert client.get(reverse("tariffs:list")).status_code == 200
    with_properties(7)
    with django_assert_max_num_queries(15):
        page = client.get(reverse("tariffs:list")).content.decode()
    assert page.count('data-testid="tariff-row"') == 10


def test_a_tariffs_page_shows_its_versions_in_time_and_who_it_prices(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    tariff_version_add(
        tariff=tariff,
        actor=owner_a,
        effective_from=timezone.now() - timedelta(minutes=1),
        **{**FLAT, "flat_price": "1.10"},
    )
    tariff_version_add(
        tariff=tariff,
        actor=None,
        effective_from=timezone.now() + timedelta(days=5),
        **{**FLAT, "flat_price": "1.30"},
    )
    meter = factories.MeterFactory(unit__property=property_a1)
    factories.AccountFactory(unit=meter.unit, tenant__name="Li Wei")
    client.force_login(owner_a)
    page = client.get(reverse("tariffs:detail", args=[tariff.uuid])).content.decode()
    for state in ("past", "current", "upcoming"):
        assert f'data-testid="version-{state}"' in page
    assert "CN¥1.10" in page
    assert "CN¥1.30" in page
    assert "Li Wei" in page
    assert meter.serial in page
    assert 'data-testid="add-version"' in page


@pytest.mark.parametrize("username", ["manager_a1", "accountant_a"])
def test_managers_and_accountants_read_tariffs_but_cannot_change_them(
    client, request, username, property_a1
):
    tariff = make_tariff(property_a1)
    client.force_login(request.getfixturevalue(username))
    assert 'data-testid="create-tariff"' not in client.get(reverse("tariffs:list")).content.decode()
    detail = client.get(reverse("tariffs:detail", args=[tariff.uuid]))
    assert detail.status_code == 200
    assert 'data-testid="add-version"' not in detail.content.decode()
    assert client.get(reverse("tariffs:version-add", args=[tariff.uuid])).status_code == 403
    assert add_version(client, tariff, editor()).status_code == 403
    create = client.post(
        reverse("tariffs:create", args=[property_a1.uuid]),
        {**editor(), "name": "Water", "utility": "water"},
    )
    assert create.status_code == 403
    assert TariffVersion.objects.count() == 1
    assert Tariff.objects.count() == 1


# Creating tariffs and adding versions -----------------------------------------------------------


def test_an_owner_creates_a_tariff_with_its_first_prices_and_it_is_audited(
    client, owner_a, property_a1
):
    client.force_login(owner_a)
    form = client.get(reverse("tariffs:create", args=[property_a1.uuid]))
    assert form.status_code == 200
    response = client.post(
        reverse("tariffs:create", args=[property_a1.uuid]),
        {
            **editor(effective_from="2026-01-01T00:00", standing_charge_per_day="0.5"),
            "name": "Residential",
            "utility": "electricity",
        },
    )
    tariff = Tariff.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("tariffs:detail", args=[tariff.uuid])
    version = tariff.versions.get()
    # Local midnight in Shanghai, allowed in the past for a first version.
    assert version.effective_from == datetime(2026, 1, 1, tzinfo=SHANGHAI)
    assert (version.flat_price, version.standing_charge_per_day) == (
        Decimal("1.2"),
        Decimal("0.5"),
    )
    actions = AuditLog.objects.filter(actor=owner_a).values_list("action", flat=True)
    assert sorted(actions) == ["tariff.create", "tariff.version_add"]


def test_an_owner_adds_time_of_use_prices_from_a_local_moment(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    weekend = [{"name": "flat", "start": "00:00", "end": "00:00", "price": "0.80"}]
    start = in_days(20)
    response = add_version(
        client,
        tariff,
        editor(
            "tou",
            weekday=WHOLE_DAY,
            weekend=weekend,
            holiday=weekend,
            effective_from=start,
            tax_percent="13",
            tax_mode="inclusive",
        ),
    )
    assert response.status_code == 302
    version = tariff.versions.latest("effective_from")
    expected = datetime.strptime(start, "%Y-%m-%dT%H:%M").replace(tzinfo=SHANGHAI)
    assert version.effective_from == expected
    assert version.kind == "tou"
    assert version.periods["weekday"] == WHOLE_DAY
    assert version.periods["weekend"] == weekend
    assert (str(version.tax_rate), version.prices_include_tax) == ("0.1300", True)
    entry = AuditLog.objects.get(action="tariff.version_add", actor=owner_a)
    assert entry.object_id == str(tariff.uuid)
    assert entry.after["periods"]["holiday"] == weekend


def test_a_combined_version_keeps_tier_surcharges_on_top_of_periods(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    bands = [
        {"limit": "260", "price": "0"},
        {"limit": "400", "price": "0.05"},
        {"limit": None, "price": "0.30"},
    ]
    response = add_version(client, tariff, editor("tou_tiered", bands=bands, weekday=WHOLE_DAY))
    assert response.status_code == 302
    version = tariff.versions.latest("effective_from")
    assert version.bands == [
        {"limit": "260", "price": "0"},
        {"limit": "400", "price": "0.05"},
        {"limit": None, "price": "0.30"},
    ]
    assert version.periods["holiday"] == WHOLE_DAY


def test_overlapping_and_uncovered_hours_are_refused_beside_the_periods(
    client, owner_a, property_a1
):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    overlapping = [
        {"name": "peak", "start": "08:00", "end": "22:00", "price": "1.20"},
        {"name": "evening", "start": "20:00", "end": "23:00", "price": "0.90"},
        {"name": "valley", "start": "23:00", "end": "06:00", "price": "0.40"},
    ]
    response = add_version(client, tariff, editor("tou", weekday=overlapping))
    page = response.content.decode()
    assert response.status_code == 400
    assert "This period overlaps “peak” during 20:00-22:00." in page
    assert "Nothing covers 06:00-08:00." in page
    assert tariff.versions.count() == 1


def test_band_limits_must_rise_and_only_the_last_band_is_open(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    bands = [
        {"limit": "100", "price": "1.00"},
        {"limit": "50", "price": "1.20"},
        {"limit": "500", "price": "1.50"},
    ]
    page = add_version(client, tariff, editor("tiered", bands=bands)).content.decode()
    assert "Each limit must be above the one before it (100)." in page
    assert "The last band has no upper limit: leave this empty." in page
    gap = [{"limit": None, "price": "1.00"}, {"limit": None, "price": "1.50"}]
    page = add_version(client, tariff, editor("tiered", bands=gap)).content.decode()
    assert "Only the last band is open-ended: give this band an upper limit." in page
    assert tariff.versions.count() == 1


def test_negative_prices_and_past_starts_are_refused(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    response = add_version(
        client, tariff, editor(flat_price="-1", effective_from=in_days(-1), tax_percent="-5")
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "A price cannot be negative." in page
    assert "A tax rate cannot be negative." in page
    assert "A new version cannot start in the past" in page
    negative_period = [{"name": "all", "start": "00:00", "end": "00:00", "price": "-0.1"}]
    page = add_version(client, tariff, editor("tou", weekday=negative_period)).content.decode()
    assert "A price cannot be negative." in page
    assert tariff.versions.count() == 1


def test_a_flat_tariff_needs_its_price(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    page = add_version(client, tariff, editor(flat_price="")).content.decode()
    assert "A flat tariff needs a price per unit." in page


def test_a_double_submit_adds_the_version_once(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    data = editor(flat_price="1.25")
    first = add_version(client, tariff, data)
    second = add_version(client, tariff, data)
    assert (first.status_code, second.status_code) == (302, 302)
    assert tariff.versions.count() == 2
    assert AuditLog.objects.filter(action="tariff.version_add", actor=owner_a).count() == 1
    other = add_version(client, tariff, {**data, "flat_price": "1.30"})
    assert "A version already starts at that moment." in other.content.decode()


def test_a_double_submit_creates_the_tariff_once(client, owner_a, property_a1):
    client.force_login(owner_a)
    data = {**editor(effective_from="2026-01-01T00:00"), "name": "Power", "utility": "electricity"}
    url = reverse("tariffs:create", args=[property_a1.uuid])
    assert client.post(url, data).status_code == 302
    assert client.post(url, data).status_code == 302
    assert Tariff.objects.count() == 1


# Rows come and go through the server -----------------------------------------------------------


def test_adding_a_band_row_returns_the_editor_with_one_more_row_and_saves_nothing(
    client, owner_a, property_a1
):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    data = editor("tiered", bands=[{"limit": None, "price": "1.00"}], action="add-band")
    response = add_version(client, tariff, data, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page
    assert 'id="editor"' in page
    assert page.count('data-testid="band-row"') == 2
    assert 'value="1.00"' in page
    assert tariff.versions.count() == 1


def test_removing_a_period_row_keeps_the_others(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    data = editor("tou", weekday=WHOLE_DAY, action="remove-weekday-0")
    page = add_version(client, tariff, data, HTTP_HX_REQUEST="true").content.decode()
    assert page.count('data-testid="weekday-row"') == 1
    assert 'value="valley"' in page
    assert page.count('data-testid="weekend-row"') == 2


def test_weekday_periods_can_be_copied_to_weekends_and_holidays(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    other = [{"name": "flat", "start": "00:00", "end": "00:00", "price": "0.80"}]
    data = editor("tou", weekday=WHOLE_DAY, weekend=other, holiday=other, action="copy-weekday")
    page = add_version(client, tariff, data, HTTP_HX_REQUEST="true").content.decode()
    assert page.count('data-testid="holiday-row"') == 2
    assert 'value="0.80"' not in page


def test_choosing_another_kind_shows_its_fields_without_saving(client, owner_a, property_a1):
    tariff = make_tariff(property_a1)
    client.force_login(owner_a)
    page = add_version(client, tariff, editor(), HTTP_HX_REQUEST="true").content.decode()
    # Saved: the flat editor was shown and submitted.
    assert tariff.versions.count() == 2
    switched = {**editor(flat_price=""), "kind": "tiered", "effective_from": in_days(11)}
    response = add_version(client, tariff, switched)
    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="band-row"' in page
    assert 'data-testid="add-band"' in page
    assert tariff.versions.count() == 2


def test_the_editor_starts_from_the_prices_in_force(client, owner_a, property_a1):
    tariff = make_tariff(property_a1, version={"kind": "tou", "periods": _all_days(WHOLE_DAY)})
    client.force_login(owner_a)
    page = client.get(reverse("tariffs:version-add", args=[tariff.uuid])).content.decode()
    assert page.count('data-testid="weekday-row"') == 2
    assert 'value="1.20"' in page
    assert 'value="valley"' in page


# What if ---------------------------------------------------------------------------------------


def test_the_what_if_page_compares_the_version_in_force_with_what_was_charged(
    december, client, accountant_a, property_a1
):
    tariff = charged_november(property_a1, units=2)
    client.force_login(accountant_a)
    response = client.get(reverse("tariffs:what-if", args=[tariff.uuid]), {"month": "2026-11"})
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count('data-testid="what-if-row"') == 2
    assert 'data-testid="difference">CN¥0.00' in page
    assert "Draft" not in page


def test_a_draft_from_the_editor_is_previewed_without_being_saved(
    december, client, owner_a, property_a1
):
    tariff = charged_november(property_a1)
    client.force_login(owner_a)
    draft = {**editor("flat", flat_price="5.00", effective_from=""), "what-if-month": "2026-11"}
    before = (TariffVersion.objects.count(), AuditLog.objects.count())
    response = client.post(
        reverse("tariffs:what-if", args=[tariff.uuid]), draft, HTTP_HX_REQUEST="true"
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page
    assert "Draft" in page
    assert 'data-testid="what-if-row"' in page
    assert 'data-testid="difference">CN¥0.00' not in page
    assert (TariffVersion.objects.count(), AuditLog.objects.count()) == before


def test_a_draft_with_mistakes_lists_them_instead(december, client, manager_a1, property_a1):
    tariff = charged_november(property_a1)
    client.force_login(manager_a1)
    draft = {**editor("tiered", bands=[{"limit": "10", "price": "1"}]), "what-if-month": "2026-11"}
    page = client.post(reverse("tariffs:what-if", args=[tariff.uuid]), draft).content.decode()
    assert "The comparison cannot be made yet" in page
    assert "The last band has no upper limit: leave this empty." in page


def test_the_what_if_makes_as_many_queries_for_ten_accounts_as_for_three(
    december, client, owner_a, property_a1, property_a2, django_assert_max_num_queries
):
    few = charged_november(property_a1, units=3)
    many = charged_november(property_a2, units=10)
    client.force_login(owner_a)
    counts = {}
    for tariff, expected in ((few, 3), (many, 10)):
        url = reverse("tariffs:what-if", args=[tariff.uuid])
        with django_assert_max_num_queries(16) as queries:
            page = client.get(url, {"month": "2026-11"}).content.decode()
        assert page.count('data-testid="what-if-row"') == expected
        counts[expected] = len(queries.captured_queries)
    assert counts[3] == counts[10]


def _all_days(periods):
    return {day: periods for day in ("weekday", "weekend", "holiday")}

"""How the what-if's changes spread across accounts: bands of percentage change, and the lowest,
median and highest change, against hand computations; and the page that shows them."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from tariffs.whatif import Amounts, Band, Comparison, change_distribution
from tests.tariffs.test_tariff_views import editor
from tests.tariffs.test_whatif import charged_november, flat, local, meter, november, tenancy

CENT = Decimal("0.01")


def _with_rates(*rates):
    return [
        Comparison(
            would=Amounts(),
            actual=Amounts(),
            difference=Decimal(0),
            rate=None if rate is None else Decimal(rate),
        )
        for rate in rates
    ]


def test_each_change_falls_in_its_band_with_the_edges_in_the_smaller_band():
    rates = ["-0.15", "-0.10", "-0.07", "-0.05", "-0.01", "0", "0.03", "0.05", "0.0501", "0.10"]
    distribution = change_distribution(_with_rates(*rates, "0.2", None))
    assert dict(distribution.bands) == {
        Band.LARGE_FALL: 1,
        Band.FALL: 2,
        Band.SMALL_FALL: 2,
        Band.NONE: 1,
        Band.SMALL_RISE: 2,
        Band.RISE: 2,
        Band.LARGE_RISE: 1,
    }
    assert [band for band, _count in distribution.bands] == list(Band)
    assert (distribution.compared, distribution.without_rate) == (11, 1)
    assert (distribution.minimum, distribution.median, distribution.maximum) == (
        Decimal("-0.15"),
        Decimal(0),
        Decimal("0.2"),
    )


def test_the_median_of_an_even_number_of_changes_is_halfway_between_the_middle_two():
    distribution = change_distribution(_with_rates("0.04", "-0.02", "0.10", "0.01"))
    assert distribution.median == Decimal("0.025")


def test_no_accounts_have_no_spread():
    distribution = change_distribution(_with_rates(None))
    assert (distribution.compared, distribution.minimum, distribution.median) == (0, None, None)
    assert sum(count for _band, count in distribution.bands) == 0


def test_the_distribution_of_a_small_history_equals_a_hand_computation():
    # Three tenants charged by hand, and a fourth without a meter, all compared with a flat
    # 1.10 without tax or standing charges.
    used = {1: 100, 2: 50, 3: 20}
    meters = [
        meter((local(11, 2), 0), (local(11, 12), kwh), unit=unit, meter_id=unit)
        for unit, kwh in used.items()
    ]
    tenancies = [tenancy(account=unit, unit=unit) for unit in range(1, 5)]
    actual = {
        1: Amounts(quantity=Decimal(100), energy_net=Decimal("100.00")),  # 110.00: +10%
        2: Amounts(quantity=Decimal(50), energy_net=Decimal("60.00")),  # 55.00: -8.33%
        3: Amounts(quantity=Decimal(20), energy_net=Decimal("22.00")),  # 22.00: no change
    }
    result = november(flat("1.10"), meters, tenancies, actual)
    would = [row.would.total.quantize(CENT) for row in result.accounts]
    assert would == [Decimal("110.00"), Decimal("55.00"), Decimal("22.00"), Decimal("0.00")]
    distribution = change_distribution(result.accounts)
    assert [row.rate for row in result.accounts] == [
        Decimal("0.1000"),
        Decimal("-0.0833"),
        Decimal(0),
        None,
    ]
    assert {band: count for band, count in distribution.bands if count} == {
        Band.RISE: 1,
        Band.FALL: 1,
        Band.NONE: 1,
    }
    assert (distribution.compared, distribution.without_rate) == (3, 1)
    assert (distribution.minimum, distribution.median, distribution.maximum) == (
        Decimal("-0.0833"),
        Decimal(0),
        Decimal("0.1000"),
    )


@pytest.fixture
def december():
    with time_machine.travel(datetime(2026, 12, 7, 2, 0, tzinfo=UTC), tick=True):
        yield


@pytest.mark.django_db
def test_the_what_if_page_shows_how_the_changes_spread(december, client, accountant_a, property_a1):
    tariff = charged_november(property_a1, units=3)
    client.force_login(accountant_a)
    url = reverse("tariffs:what-if", args=[tariff.uuid])
    page = client.get(url, {"month": "2026-11"}).content.decode()
    # The tariff that charged changes nothing for anyone.
    assert 'data-band="none" data-count="3"' in page
    assert 'data-band="small_rise" data-count="0"' in page
    assert 'data-testid="change-median">0%' in page


@pytest.mark.django_db
def test_a_dearer_draft_moves_every_account_up(december, client, owner_a, property_a1):
    tariff = charged_november(property_a1, units=2)
    client.force_login(owner_a)
    draft = {**editor("flat", flat_price="5.00", effective_from=""), "what-if-month": "2026-11"}
    response = client.post(
        reverse("tariffs:what-if", args=[tariff.uuid]), draft, HTTP_HX_REQUEST="true"
    )
    page = response.content.decode()
    assert 'data-testid="distribution"' in page
    assert 'data-band="large_rise" data-count="2"' in page
    assert 'data-band="none" data-count="0"' in page

"""What the portal says about the tariff now comes from the engine that charges."""

from datetime import UTC, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from tariffs.explain import tariff_now
from tariffs.pricing import Band, DayType, Period, Schedule, TariffKind, TariffVersion

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")
SINCE = datetime(2020, 1, 1, tzinfo=UTC)
PEAK = Period("peak", time(8), time(22), D("1.20"))
VALLEY = Period("valley", time(22), time(8), D("0.40"))
ALL_DAY = Period("flat", time(0), time(0), D("0.80"))


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def tou(**options) -> TariffVersion:
    return TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TOU,
        periods={
            DayType.WEEKDAY: (PEAK, VALLEY),
            DayType.WEEKEND: (ALL_DAY,),
            DayType.HOLIDAY: (ALL_DAY,),
        },
        **options,
    )


def test_a_flat_tariff_has_one_price_and_no_change_ahead():
    flat = TariffVersion(effective_from=SINCE, kind=TariffKind.FLAT, flat_price=D("0.6"))
    now = tariff_now(
        Schedule(versions=(flat,), tz=SHANGHAI), moment=local(2026, 3, 4, 12), month_to_date=D(0)
    )
    assert (now.period, now.band, now.price, now.changes_at) == (None, None, D("0.6"), None)


def test_time_of_use_names_the_period_now_and_when_the_next_one_starts():
    # Wednesday 4 March 2026, 15:00 in Shanghai: peak until 22:00, then valley.
    now = tariff_now(
        Schedule(versions=(tou(),), tz=SHANGHAI), moment=local(2026, 3, 4, 15), month_to_date=D(0)
    )
    assert (now.period, now.day_type, now.price) == ("peak", "weekday", D("1.20"))
    assert now.changes_at == local(2026, 3, 4, 22)
    assert (now.next_period, now.next_price) == ("valley", D("0.40"))


def test_on_friday_night_the_next_change_is_the_weekend_price_at_midnight():
    # Friday 6 March, 23:00: valley, and at Saturday 00:00 the weekend's flat price.
    now = tariff_now(
        Schedule(versions=(tou(),), tz=SHANGHAI), moment=local(2026, 3, 6, 23), month_to_date=D(0)
    )
    assert now.period == "valley"
    assert (now.changes_at, now.next_period, now.next_price) == (
        local(2026, 3, 7, 0),
        "flat",
        D("0.80"),
    )


def test_prices_stated_without_tax_are_shown_with_it():
    now = tariff_now(
        Schedule(versions=(tou(tax_rate=D("0.13")),), tz=SHANGHAI),
        moment=local(2026, 3, 4, 15),
        month_to_date=D(0),
    )
    assert now.price == D("1.356")
    assert now.next_price == D("0.452")


def test_prices_stated_with_tax_are_shown_as_stated():
    now = tariff_now(
        Schedule(versions=(tou(tax_rate=D("0.13"), prices_include_tax=True),), tz=SHANGHAI),
        moment=local(2026, 3, 4, 15),
        month_to_date=D(0),
    )
    assert now.price == D("1.20")


def test_a_tiered_tariff_says_the_band_and_how_much_is_left_in_it():
    tiered = TariffVersion(
        effective_from=SINCE,
        kind=TariffKind.TIERED,
        bands=(Band(D(100), D("0.50")), Band(D(200), D("0.70")), Band(None, D("1.00"))),
    )
    now = tariff_now(
        Schedule(versions=(tiered,), tz=SHANGHAI),
        moment=local(2026, 3, 31, 12),
        month_to_date=D(130),
    )
    assert (now.band, now.band_count, now.band_remaining, now.price) == (2, 3, D(70), D("0.70"))
    # The bands start again with the month: back to the first band's price.
    assert (now.changes_at, now.next_price) == (local(2026, 4, 1), D("0.50"))


def test_a_new_version_ahead_is_the_next_change():
    old = TariffVersion(effective_from=SINCE, kind=TariffKind.FLAT, flat_price=D("0.60"))
    new = TariffVersion(
        effective_from=local(2026, 3, 5, 9, 30), kind=TariffKind.FLAT, flat_price=D("0.65")
    )
    now = tariff_now(
        Schedule(versions=(old, new), tz=SHANGHAI),
        moment=local(2026, 3, 4, 15),
        month_to_date=D(0),
    )
    assert (now.price, now.changes_at, now.next_price) == (
        D("0.60"),
        local(2026, 3, 5, 9, 30),
        D("0.65"),
    )

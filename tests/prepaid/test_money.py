from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prepaid.money import CurrencyError, CurrencyMismatch, Money, minor_unit, quantize


def test_no_float_ever_becomes_an_amount():
    with pytest.raises(TypeError):
        Money(0.1, "CNY")
    with pytest.raises(TypeError):
        quantize(1.005, "CNY")


def test_minor_units_follow_iso_4217():
    assert minor_unit("CNY") == Decimal("0.01")
    assert minor_unit("JPY") == Decimal("1")
    assert minor_unit("BHD") == Decimal("0.001")


def test_unknown_or_malformed_currencies_are_refused():
    for code in ("cny", "ABC", "RMB", "", "CNYY"):
        with pytest.raises(CurrencyError):
            Money(Decimal(1), code)


def test_amounts_in_different_currencies_do_not_mix():
    with pytest.raises(CurrencyMismatch):
        Money(Decimal(1), "CNY") + Money(Decimal(1), "KES")


def test_non_finite_amounts_are_refused():
    for value in ("NaN", "Infinity", Decimal("-Infinity")):
        with pytest.raises(ValueError, match="finite"):
            Money(value, "CNY")


def test_rounding_is_to_the_nearest_even_minor_unit():
    assert quantize(Decimal("0.125"), "CNY") == Decimal("0.12")
    assert quantize(Decimal("0.135"), "CNY") == Decimal("0.14")
    assert quantize(Decimal("2.5"), "JPY") == Decimal("2")


def test_formatting_follows_the_locale():
    assert Money(Decimal("1234.5"), "CNY").format("zh_Hans_CN") == "¥1,234.50"


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9
    )
)
def test_quantizing_twice_changes_nothing_and_moves_less_than_half_a_minor_unit(amount):
    once = quantize(amount, "CNY")
    assert quantize(once, "CNY") == once
    assert abs(once - amount) <= Decimal("0.005")

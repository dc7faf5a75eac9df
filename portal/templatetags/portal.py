from decimal import Decimal

from babel.numbers import format_currency
from django import template
from django.utils.translation import get_language

from notifications.texts import MONEY_LOCALES
from prepaid.money import Money

register = template.Library()


@register.filter
def money(amount: Decimal | None, currency: str) -> str:
    """An amount in its currency, written the way the reader's language writes money."""
    if amount is None:
        return ""
    return Money(Decimal(amount), currency).format(MONEY_LOCALES.get(get_language(), "en"))


@register.filter
def price(amount: Decimal | None, currency: str) -> str:
    """A unit price: like money, but keeping up to four places (0.565 stays 0.565)."""
    if amount is None:
        return ""
    shown = Decimal(amount).quantize(Decimal("0.0001")).normalize()
    return format_currency(
        shown,
        currency,
        locale=MONEY_LOCALES.get(get_language(), "en"),
        decimal_quantization=False,
    )


@register.filter
def plain(amount: Decimal | None, places: int = 2) -> str:
    """A decimal for machines and charts: fixed places, a dot, no grouping."""
    if amount is None:
        return ""
    return f"{Decimal(amount):.{int(places)}f}"


@register.filter
def percent(rate: Decimal | None) -> str:
    """0.13 as "13%"."""
    if rate is None:
        return ""
    return f"{(Decimal(rate) * 100).normalize():f}%"

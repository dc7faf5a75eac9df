"""Money: Decimal amounts that travel with their ISO 4217 currency.

Floats never touch an amount: every constructor here refuses them. Amounts are quantized to the
currency's minor unit (CNY 0.01, JPY 1, BHD 0.001) only at the edges, with banker's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

# Widest amount any ledger column holds: 18 digits, 4 of them after the point (sub-minor units
# for currencies with up to 4 decimals), so every minor unit fits.
AMOUNT_MAX_DIGITS = 18
AMOUNT_DECIMAL_PLACES = 4


class CurrencyError(ValueError):
    pass


class CurrencyMismatch(CurrencyError):
    pass


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def validate_currency(code: str) -> str:
    if not isinstance(code, str) or len(code) != 3 or code.upper() != code:
        raise CurrencyError(f"{code!r} is not an ISO 4217 currency code such as CNY or USD.")
    if code not in _known_currencies():
        raise CurrencyError(f"{code!r} is not a known ISO 4217 currency.")
    return code


@cache
def minor_unit(currency: str) -> Decimal:
    """The smallest amount of a currency: Decimal('0.01') for CNY, Decimal('1') for JPY."""
    return Decimal(1).scaleb(-get_currency_precision(validate_currency(currency)))


def to_decimal(value: Decimal | int | str) -> Decimal:
    """An exact Decimal from a Decimal, int or numeric string; floats are refused."""
    if isinstance(value, bool | float):
        raise TypeError(f"Amounts must be Decimal, int or str, never {type(value).__name__}.")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number.") from None
    else:
        raise TypeError(f"Amounts must be Decimal, int or str, never {type(value).__name__}.")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite amount.")
    return result


def quantize(amount: Decimal, currency: str) -> Decimal:
    return to_decimal(amount).quantize(minor_unit(currency), rounding=ROUND_HALF_EVEN)


def is_whole_minor_units(amount: Decimal, currency: str) -> bool:
    return to_decimal(amount) == quantize(amount, currency)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", to_decimal(self.amount))
        validate_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _same_currency(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"Cannot combine Money with {type(other).__name__}.")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"Cannot combine {self.currency} with {other.currency}.")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def quantized(self) -> Money:
        return Money(quantize(self.amount, self.currency), self.currency)

    def format(self, locale: str = "en") -> str:
        return format_currency(self.quantized().amount, self.currency, locale=locale)

    def __str__(self) -> str:
        return f"{self.quantized().amount} {self.currency}"

"""Conversion between stored tariff versions (JSON fields) and the pricing engine's objects."""

from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError

from tariffs import pricing
from tariffs.models import TariffVersion


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool | float):
        raise ValidationError(f'{where}: give the number as a string, e.g. "1.25".')
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(f"{where}: {value!r} is not a number.") from None
    if not result.is_finite():
        raise ValidationError(f"{where}: {value!r} is not a finite number.")
    return result


def _clock(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(f"{where}: {value!r} is not a time such as 08:00.") from None


def _bands(raw: Any) -> tuple[pricing.Band, ...]:
    if not isinstance(raw, list):
        raise ValidationError({"bands": "Give a list of {limit, price} objects."})
    bands = []
    for number, band in enumerate(raw, start=1):
        if not isinstance(band, dict) or set(band) - {"limit", "price"} or "price" not in band:
            raise ValidationError({"bands": f"Band {number} needs a price and a limit (or null)."})
        limit = band.get("limit")
        bands.append(
            pricing.Band(
                limit=None if limit is None else _decimal(limit, f"band {number} limit"),
                price=_decimal(band["price"], f"band {number} price"),
            )
        )
    return tuple(bands)


def _periods(raw: Any) -> dict[pricing.DayType, tuple[pricing.Period, ...]]:
    if not isinstance(raw, dict):
        raise ValidationError({"periods": "Give an object of day types to lists of periods."})
    table = {}
    for day_type, periods in raw.items():
        try:
            key = pricing.DayType(day_type)
        except ValueError:
            allowed = ", ".join(pricing.DayType)
            raise ValidationError({"periods": f"{day_type!r} is not one of {allowed}."}) from None
        if not isinstance(periods, list) or not all(isinstance(p, dict) for p in periods):
            raise ValidationError({"periods": f"{day_type}: give a list of periods."})
        table[key] = tuple(
            pricing.Period(
                name=str(period.get("name", "")),
                start=_clock(period.get("start"), f"{day_type} period start"),
                end=_clock(period.get("end"), f"{day_type} period end"),
                price=_decimal(period.get("price"), f"{day_type} {period.get('name')} price"),
            )
            for period in periods
        )
    return table


def pricing_version(
    *,
    effective_from: datetime,
    kind: str,
    flat_price: Any = None,
    bands: Any = (),
    periods: Any = None,
    standing_charge_per_day: Any = 0,
    tax_rate: Any = 0,
    prices_include_tax: bool = False,
) -> pricing.TariffVersion:
    """The engine's version for stored or submitted data; any problem is a ValidationError."""
    try:
        version = pricing.TariffVersion(
            effective_from=effective_from,
            kind=pricing.TariffKind(kind),
            flat_price=None if flat_price is None else _decimal(flat_price, "flat price"),
            bands=_bands(list(bands)),
            periods=_periods(periods or {}),
            standing_charge_per_day=_decimal(standing_charge_per_day, "standing charge"),
            tax_rate=_decimal(tax_rate, "tax rate"),
            prices_include_tax=prices_include_tax,
        )
        version.validate()
    except (pricing.TariffError, ValueError, TypeError) as error:
        raise ValidationError(str(error)) from None
    return version


def stored_pricing_version(version: TariffVersion) -> pricing.TariffVersion:
    return pricing_version(
        effective_from=version.effective_from,
        kind=version.kind,
        flat_price=version.flat_price,
        bands=version.bands,
        periods=version.periods,
        standing_charge_per_day=version.standing_charge_per_day,
        tax_rate=version.tax_rate,
        prices_include_tax=version.prices_include_tax,
    )

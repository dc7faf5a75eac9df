"""The daily freeze report: each account's frozen local days, with the money by component.

One row per account and frozen local day (`DailyFreeze`): the unit's electricity and water
registers at the midnights either side (`MeterFreeze`) and what the account consumed, the opening
balance, top-ups by channel, charges (energy by time-of-use period and tier band, standing
charge, tax), refunds, adjustments and the closing balance. Every row ties (invariant 8):

    opening + top-ups - charges - refunds + adjustments = closing

The channels and the periods and bands come from the money itself. A top-up's channel is the
book it came from: cash, or the clearing account of the bank or a payment provider. Energy is
split by the lines of the charges each day's transactions posted (`Charge.lines`), each
(period, band) rounded to the currency per account and day; what the ledger posted differs from
that by the sub-minor remainders `charges_post` carries forward, shown as energy rounding, so
the energy columns add up to the energy net the wallet was charged, to the cent.

Rows stream in (unit, account, day) order from three ordered queries merged as they arrive:
the frozen days, the energy lines grouped by account, day, period and band, and the top-ups
grouped by account, day and channel. The number of queries never depends on the number of
rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db.models import F, Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.models import DailyFreeze
from payments.models import Provider
from prepaid.money import quantize
from reports import selectors
from reports.base import Chart, Column, Filters, Kind, Report, Series, Value

# A page this long or shorter is read first, so the money is read for its accounts only.
PAGE_AT_MOST = 5000
COUNTER_CHANNELS = ("cash", "bank")


def channel_label(channel: str) -> str:
    if channel == "cash":
        return _("Top-ups: cash")
    if channel == "bank":
        return _("Top-ups: bank transfer")
    name = Provider(channel).label if channel in Provider.values else channel
    return _("Top-ups: %(provider)s") % {"provider": name}


def band_number(band) -> int | None:
    """The 1-based band of a charge line; the line holds it 0-based, or none."""
    return None if band is None else int(band) + 1


def energy_label(period: str | None, band) -> str:
    number = band_number(band)
    if period and number is not None:
        return _("Energy %(period)s band %(band)d") % {"period": period, "band": number}
    if period:
        return _("Energy %(period)s") % {"period": period}
    if number is not None:
        return _("Energy band %(band)d") % {"band": number}
    return _("Energy at a single price")


def _energy_order(key: tuple) -> tuple:
    period, band = key
    return (period is None, period or "", band is None, band_number(band) or 0)


def _channel_order(channel: str) -> tuple:
    counter = channel in COUNTER_CHANNELS
    return (not counter, COUNTER_CHANNELS.index(channel) if counter else 0, channel)


@dataclass(frozen=True)
class _Layout:
    """The columns that depend on the range: its channels and its (period, band) pairs."""

    window: selectors.FreezeWindow
    channels: tuple[str, ...]
    energy: tuple[tuple, ...]
    breakdown: selectors.Breakdown


class DailyFreezeReport(Report):
    slug = "daily-freeze"
    title = gettext_lazy("Daily freeze")
    description = gettext_lazy(
        "Each account's frozen local days: the registers at the midnights either side, what it "
        "consumed, and its money by component. On every row the opening balance plus top-ups, "
        "less charges and refunds, plus adjustments, is the closing balance. Energy is split by "
        "time-of-use period and tier band; energy rounding is the remainder the ledger carries "
        "to the cent. In the totals, the opening balance is each account's on its first day in "
        "the range and the closing balance each account's on its last."
    )

    def _layout(self, filters: Filters) -> _Layout:
        window = selectors.freeze_window(filters=filters)
        found = selectors.breakdown(window=window)
        channels = sorted(set(COUNTER_CHANNELS) | set(found.topups), key=_channel_order)
        return _Layout(
            window=window,
            channels=tuple(channels),
            energy=tuple(sorted(found.energy, key=_energy_order)),
            breakdown=found,
        )

    def _columns(self, layout: _Layout) -> list[Column]:
        money, quantity = Kind.MONEY, Kind.QUANTITY
        return [
            Column("unit", _("Unit")),
            Column("tenant", _("Tenant")),
            Column("day", _("Day"), Kind.DATE),
            Column("electricity_opening", _("Electricity register, opening (kWh)"), quantity),
            Column("electricity_closing", _("Electricity register, closing (kWh)"), quantity),
            Column("electricity", _("Electricity used (kWh)"), quantity),
            Column("water_opening", _("Water register, opening (m³)"), quantity),
            Column("water_closing", _("Water register, closing (m³)"), quantity),
            Column("water", _("Water used (m³)"), quantity),
            Column("opening_balance", _("Opening balance"), money),
            *(Column(f"topups_{c}", channel_label(c), money) for c in layout.channels),
            Column("topups", _("Top-ups"), money),
            *(
                Column(f"energy_{index}", energy_label(*key), money)
                for index, key in enumerate(layout.energy, start=1)
            ),
            Column("energy_rounding", _("Energy rounding"), money),
            Column("energy_net", _("Energy net"), money),
            Column("standing_net", _("Standing charge net"), money),
            Column("tax", _("Tax"), money),
            Column("charges", _("Charges"), money),
            Column("refunds", _("Refunds"), money),
            Column("adjustments", _("Adjustments"), money),
            Column("closing_balance", _("Closing balance"), money),
        ]

    def columns(self, filters: Filters) -> Sequence[Column]:
        return self._columns(self._layout(filters))

    def count(self, filters: Filters) -> int:
        return DailyFreeze.objects.filter(
            property=filters.property, day__gte=filters.start, day__lte=filters.end
        ).count()

    def rows(
        self, filters: Filters, *, offset: int = 0, limit: int | None = None
    ) -> Iterator[Sequence[Value]]:
        layout = self._layout(filters)
        window = layout.window
        if window.last is None:
            return
        frozen = selectors.freeze_rows(window=window, offset=offset, limit=limit)
        accounts = None
        if limit is not None and limit <= PAGE_AT_MOST:
            frozen = list(frozen)
            if not frozen:
                return
            accounts = sorted({row[1] for row in frozen})
        energy = selectors.energy_rows(window=window, accounts=accounts)
        topups = selectors.topup_rows(window=window, accounts=accounts)
        yield from _merged(layout, frozen, energy, topups)

    def totals(self, filters: Filters) -> Sequence[Value] | None:
        layout = self._layout(filters)
        found = selectors.freeze_totals(window=layout.window)
        zero = selectors.zero(filters.currency)
        energy = [layout.breakdown.energy.get(key, zero) for key in layout.energy]
        return (
            _("Total"),
            None,
            None,
            None,
            None,
            found.electricity,
            None,
            None,
            found.water,
            found.opening,
            *(layout.breakdown.topups.get(channel, zero) for channel in layout.channels),
            found.topups,
            *energy,
            found.energy_net - sum(energy, zero),
            found.energy_net,
            found.standing_net,
            found.tax,
            found.charges,
            found.refunds,
            found.adjustments,
            found.closing,
        )

    def chart(self, filters: Filters) -> Chart | None:
        zero = selectors.zero(filters.currency)
        sums = {
            row["day"]: row
            for row in DailyFreeze.objects.filter(
                property=filters.property, day__gte=filters.start, day__lte=filters.end
            )
            .values("day")
            .annotate(
                topups=Sum("topups"),
                charges=Sum(
                    F("energy_net") + F("energy_tax") + F("standing_net") + F("standing_tax")
                ),
            )
            .order_by("day")
        }
        days = [filters.start + timedelta(days=n) for n in range(filters.days)]

        def series(name: str) -> list[Decimal]:
            return [
                quantize(sums[day][name], filters.currency) if day in sums else zero for day in days
            ]

        return Chart(
            labels=[day.isoformat() for day in days],
            series=[
                Series(gettext_lazy("Top-ups"), series("topups")),
                Series(gettext_lazy("Charges"), series("charges")),
            ],
            unit=filters.currency,
            style="bars",
        )


def _merged(layout: _Layout, frozen, energy, topups) -> Iterator[tuple]:
    """The frozen rows with their top-ups by channel and energy by (period, band) spliced in.

    All three streams are in (unit, account, day) order; a top-up or energy row whose
    account-day has no frozen row (a day not frozen yet) is passed over."""
    channel_at = {channel: index for index, channel in enumerate(layout.channels)}
    energy_at = {key: index for index, key in enumerate(layout.energy)}
    zero = selectors.zero(layout.window.filters.currency)
    no_topups = (zero,) * len(channel_at)
    no_energy = (zero,) * len(energy_at)
    topup = next(topups, None)
    line = next(energy, None)
    for row in frozen:
        key = row[:3]
        while topup is not None and topup[:3] < key:
            topup = next(topups, None)
        if topup is not None and topup[:3] == key:
            slots = list(no_topups)
            while topup is not None and topup[:3] == key:
                index = channel_at.get(topup[3])
                if index is not None:
                    slots[index] = topup[4]
                topup = next(topups, None)
            channels = tuple(slots)
        else:
            channels = no_topups
        while line is not None and line[:3] < key:
            line = next(energy, None)
        energy_net = row[12]
        if line is not None and line[:3] == key:
            slots = list(no_energy)
            while line is not None and line[:3] == key:
                index = energy_at.get((line[3], line[4]))
                if index is not None:
                    slots[index] = line[5]
                line = next(energy, None)
            parts = tuple(slots)
            rounding = energy_net - sum(parts, zero)
        else:
            parts = no_energy
            rounding = energy_net
        yield (
            row[0],
            row[3],
            row[2],
            *row[4:11],
            *channels,
            row[11],
            *parts,
            rounding,
            *row[12:],
        )


REPORTS: list[Report] = [DailyFreezeReport()]

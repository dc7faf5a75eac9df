"""How long an account's credit will last, from how it spends by hour of the week.

Pure: no ORM. A household spends differently at 19:00 on a Friday than at 03:00 on a Tuesday,
so the recent charges are averaged per hour of the week (168 slots) and the balance is run down
slot by slot from now. Hours of the week the history does not cover count at the history's
overall hourly average.
"""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

HOURS_PER_WEEK = 7 * 24
MINIMUM_HISTORY = timedelta(days=7)
# Beyond a year, "days left" means nothing to a tenant; the estimate stops there.
LONGEST = timedelta(days=366)
WEEK_SECONDS = Decimal(7 * 24 * 3600)
TENTH = Decimal("0.1")


def _slot(moment: datetime, zone: ZoneInfo) -> int:
    local = moment.astimezone(zone)
    return local.weekday() * 24 + local.hour


def days_of_credit(
    *,
    balance: Decimal,
    threshold: Decimal,
    spending: Iterable[tuple[datetime, Decimal]],
    history_start: datetime,
    now: datetime,
    zone: ZoneInfo,
) -> Decimal | None:
    """Days until the balance reaches `threshold`, to a tenth of a day; 0 when it has already.

    `spending` is (moment, amount) of each charge since `history_start`. None when there is
    less than MINIMUM_HISTORY of it or nothing was spent: there is nothing to estimate from.
    """
    if balance <= threshold:
        return Decimal(0)
    if now - history_start < MINIMUM_HISTORY:
        return None
    totals = [Decimal(0)] * HOURS_PER_WEEK
    for moment, amount in spending:
        totals[_slot(moment, zone)] += amount
    spent = sum(totals, Decimal(0))
    if spent <= 0:
        return None
    weeks = Decimal((now - history_start) // timedelta(seconds=1)) / WEEK_SECONDS
    per_slot = [total / weeks for total in totals]
    overall = spent / weeks / HOURS_PER_WEEK
    rates = [rate if rate > 0 else overall for rate in per_slot]
    left = balance - threshold
    # Step in UTC so every step is an hour, also across a DST change.
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    for hours in range(LONGEST // timedelta(hours=1)):
        rate = rates[_slot(hour + timedelta(hours=hours), zone)]
        if rate >= left:
            return ((Decimal(hours) + left / rate) / 24).quantize(TENTH)
        left -= rate
    return Decimal(LONGEST.days)

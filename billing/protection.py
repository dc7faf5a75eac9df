"""Protected periods: when supply must not be cut off automatically (nights, weekends, public
holidays, a property's own days off).

Pure: no ORM. Times are the property's local wall-clock times, so "18:00 to 08:00" means that
every day, across DST changes; instants in and out are aware datetimes.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# A protected stretch longer than this is a misconfiguration (every day protected): give up
# rather than loop, and treat the moment as protected for good.
_LONGEST_SEARCH = timedelta(days=400)


@dataclass(frozen=True)
class ProtectedPeriods:
    """Daily hours from `daily_start` to `daily_end` (wrapping midnight when the end comes
    first, e.g. 18:00 to 08:00; none when either is None), plus whole weekend days and holidays
    when chosen."""

    daily_start: time | None = None
    daily_end: time | None = None
    weekends: bool = False
    holidays: bool = False

    def covers(self, moment: datetime, is_holiday: Callable[[date], bool]) -> bool:
        """Whether a local (naive) wall-clock moment is protected."""
        day = moment.date()
        if self.weekends and day.weekday() >= 5:
            return True
        if self.holidays and is_holiday(day):
            return True
        if self.daily_start is None or self.daily_end is None:
            return False
        now = moment.time()
        if self.daily_start <= self.daily_end:
            return self.daily_start <= now < self.daily_end
        return now >= self.daily_start or now < self.daily_end

    def next_boundary(self, moment: datetime) -> datetime:
        """The first local moment after `moment` at which protection may start or end."""
        candidates = [datetime.combine(moment.date() + timedelta(days=1), time())]
        for edge in (self.daily_start, self.daily_end):
            if edge is None:
                continue
            today = datetime.combine(moment.date(), edge)
            candidates.append(today if today > moment else today + timedelta(days=1))
        return min(candidates)


def protected_until(
    periods: ProtectedPeriods,
    *,
    at: datetime,
    zone: ZoneInfo,
    is_holiday: Callable[[date], bool],
) -> datetime | None:
    """When the protected period that `at` falls in ends, or None when `at` is not protected.

    The end is the first local moment after `at` that is not protected, as an aware UTC
    datetime. A wall-clock time that a DST change skips is taken as the moment just after it.
    """
    if at.tzinfo is None:
        raise TypeError("at must be an aware datetime")
    moment = at.astimezone(zone).replace(tzinfo=None)
    if not periods.covers(moment, is_holiday):
        return None
    limit = moment + _LONGEST_SEARCH
    while moment < limit:
        moment = periods.next_boundary(moment)
        if not periods.covers(moment, is_holiday):
            return _instant(moment, zone)
    return datetime.max.replace(tzinfo=UTC)


def _instant(local: datetime, zone: ZoneInfo) -> datetime:
    # fold=0 resolves a repeated wall-clock time to its first occurrence, and a skipped one to
    # the instant the clocks jumped over it.
    return local.replace(tzinfo=zone).astimezone(UTC)


def next_protected_period(
    periods: ProtectedPeriods,
    *,
    after: datetime,
    zone: ZoneInfo,
    is_holiday: Callable[[date], bool],
    horizon: timedelta = timedelta(days=8),
) -> tuple[datetime, datetime] | None:
    """The protected period `after` falls in, or else the next one to start within `horizon`,
    as (start, end) in UTC; None when there is none."""
    if after.tzinfo is None:
        raise TypeError("after must be an aware datetime")
    end = protected_until(periods, at=after, zone=zone, is_holiday=is_holiday)
    if end is not None:
        return after.astimezone(UTC), end
    moment = after.astimezone(zone).replace(tzinfo=None)
    limit = moment + horizon
    while moment < limit:
        moment = periods.next_boundary(moment)
        if periods.covers(moment, is_holiday):
            start = _instant(moment, zone)
            return start, protected_until(periods, at=start, zone=zone, is_holiday=is_holiday)
    return None

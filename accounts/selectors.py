from collections.abc import Iterable
from datetime import date

import holidays
from django.db.models import Count, Q

from accounts.models import Account, Membership, Property
from prepaid.scoping import Scope


def scope_for_user(*, user) -> Scope | None:
    """What a staff user may see; None for anyone who is not staff of an organisation."""
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.select_related("organisation")
        .prefetch_related("properties")
        .filter(user=user)
        .first()
    )
    if membership is None:
        return None
    limited_to = frozenset(prop.pk for prop in membership.properties.all())
    return Scope(
        organisation=membership.organisation,
        role=membership.role,
        property_ids=limited_to or None,
    )


def property_summaries(*, scope: Scope):
    """The caller's properties with their unit, occupancy and meter counts, in one query."""
    return (
        Property.objects.for_scope(scope)
        .annotate(
            unit_count=Count("units", distinct=True),
            open_account_count=Count(
                "units__accounts",
                filter=Q(units__accounts__status=Account.Status.OPEN),
                distinct=True,
            ),
            meter_count=Count(
                "units__meters",
                filter=Q(units__meters__removed_at__isnull=True),
                distinct=True,
            ),
        )
        .order_by("name")
    )


class HolidayCalendar:
    """The property's country's public holidays (the `holidays` library) plus its own dates."""

    def __init__(self, country: str, extra_dates: Iterable[date] = ()):
        self._country = holidays.country_holidays(country) if country in _SUPPORTED else {}
        self._extra = frozenset(extra_dates)

    def __call__(self, day: date) -> bool:
        return day in self._extra or day in self._country


_SUPPORTED = frozenset(holidays.list_supported_countries())


def holiday_calendar(*, property: Property) -> HolidayCalendar:
    return HolidayCalendar(property.country, property.holidays.values_list("date", flat=True))

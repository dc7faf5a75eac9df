from accounts.selectors import HolidayCalendar
from tariffs import pricing
from tariffs.models import Tariff
from tariffs.stored import stored_pricing_version


def tariff_schedule(*, tariff: Tariff, calendar: HolidayCalendar) -> pricing.Schedule:
    """Everything the pricing engine needs to price this tariff's consumption at any moment."""
    versions = tuple(stored_pricing_version(version) for version in tariff.versions.all())
    return pricing.Schedule(versions=versions, tz=tariff.property.zone, is_holiday=calendar)

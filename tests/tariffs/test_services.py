from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import PropertyHoliday
from accounts.selectors import holiday_calendar
from prepaid.audit.models import AuditLog
from tariffs.models import TariffVersion
from tariffs.selectors import tariff_schedule
from tariffs.services import tariff_create, tariff_version_add

pytestmark = pytest.mark.django_db

FLAT = {"kind": "flat", "flat_price": "1.00"}


def test_a_tariff_starts_with_a_version_and_is_audited(property_a1, owner_a):
    tariff = tariff_create(
        property=property_a1,
        utility="electricity",
        name="Flat",
        actor=owner_a,
        version={"effective_from": datetime(2026, 1, 1, tzinfo=UTC), **FLAT},
    )
    assert tariff.versions.get().flat_price == 1
    assert list(
        AuditLog.objects.filter(object_id=str(tariff.uuid)).values_list("action", flat=True)
    ) == ["tariff.version_add", "tariff.create"]


def test_an_invalid_version_is_refused_with_the_engines_reason(property_a1):
    gappy = {
        "kind": "tou",
        "periods": {
            day: [{"name": "peak", "start": "08:00", "end": "22:00", "price": "1"}]
            for day in ("weekday", "weekend", "holiday")
        },
    }
    with pytest.raises(ValidationError, match="leave 00:00-08:00 uncovered"):
        tariff_create(
            property=property_a1,
            utility="electricity",
            name="Gappy",
            actor=None,
            version={"effective_from": timezone.now(), **gappy},
        )
    assert not TariffVersion.objects.exists()


def test_new_prices_cannot_rewrite_the_past(property_a1):
    tariff = tariff_create(
        property=property_a1,
        utility="water",
        name="Water",
        actor=None,
        version={"effective_from": datetime(2026, 1, 1, tzinfo=UTC), **FLAT},
    )
    with pytest.raises(ValidationError, match="past"):
        tariff_version_add(
            tariff=tariff, actor=None, effective_from=timezone.now() - timedelta(days=1), **FLAT
        )
    later = timezone.now() + timedelta(days=30)
    tariff_version_add(
        tariff=tariff, actor=None, effective_from=later, **{**FLAT, "flat_price": "1.20"}
    )
    with pytest.raises(ValidationError, match="already starts"):
        tariff_version_add(tariff=tariff, actor=None, effective_from=later, **FLAT)
    assert tariff.versions.count() == 2


def test_one_tariff_per_property_and_utility(property_a1):
    version = {"effective_from": timezone.now(), **FLAT}
    tariff_create(
        property=property_a1, utility="electricity", name="A", actor=None, version=version
    )
    with pytest.raises(ValidationError):
        tariff_create(
            property=property_a1, utility="electricity", name="B", actor=None, version=version
        )


def test_the_schedule_knows_national_and_custom_holidays(property_a1):
    PropertyHoliday.objects.create(property=property_a1, date=date(2026, 6, 3), name="Estate day")
    tariff = tariff_create(
        property=property_a1,
        utility="electricity",
        name="Flat",
        actor=None,
        version={"effective_from": timezone.now(), **FLAT},
    )
    schedule = tariff_schedule(tariff=tariff, calendar=holiday_calendar(property=property_a1))
    assert schedule.day_type(date(2026, 10, 1)) == "holiday"  # National Day in China
    assert schedule.day_type(date(2026, 6, 3)) == "holiday"
    assert schedule.day_type(date(2026, 6, 4)) == "weekday"
    assert schedule.day_type(date(2026, 6, 6)) == "weekend"

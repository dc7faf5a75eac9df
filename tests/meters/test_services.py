import pytest
from django.core.exceptions import ValidationError

from meters import services
from meters.models import Meter
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_meter_from_stock_is_installed_then_removed_with_history(property_a1, owner_a):
    meter = services.meter_register(
        organisation=property_a1.organisation, actor=owner_a, serial="S1", utility="water"
    )
    assert (meter.unit, meter.installed_at, meter.register_unit) == (None, None, "m³")
    unit = factories.UnitFactory(property=property_a1)
    services.meter_install(meter=meter, unit=unit, actor=owner_a)
    services.meter_remove(meter=meter, actor=owner_a, reason="valve stuck")
    meter.refresh_from_db()
    assert meter.unit == unit
    assert meter.removed_at >= meter.installed_at
    actions = list(
        AuditLog.objects.filter(object_id=str(meter.uuid))
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == ["meter.register", "meter.install", "meter.remove"]


def test_an_installed_meter_cannot_be_installed_again(property_a1):
    meter = factories.MeterFactory(unit__property=property_a1)
    other = factories.UnitFactory(property=property_a1)
    with pytest.raises(ValidationError, match="already installed"):
        services.meter_install(meter=meter, unit=other, actor=None)


def test_a_meter_cannot_go_into_another_organisations_unit(property_a1, property_b1):
    meter = services.meter_register(
        organisation=property_a1.organisation, actor=None, serial="S2", utility="electricity"
    )
    foreign_unit = factories.UnitFactory(property=property_b1)
    with pytest.raises(ValidationError, match="another organisation"):
        services.meter_install(meter=meter, unit=foreign_unit, actor=None)


def test_a_duplicate_serial_is_a_validation_error_not_a_crash(property_a1):
    factories.MeterFactory(unit__property=property_a1, serial="DUP")
    with pytest.raises(ValidationError):
        services.meter_register(
            organisation=property_a1.organisation, actor=None, serial="DUP", utility="water"
        )
    assert Meter.objects.filter(serial="DUP").count() == 1

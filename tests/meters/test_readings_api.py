from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from billing.models import Charge
from meters.models import Meter, Reading
from meters.services import readings_ingest
from prepaid.celery import app
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def meter(property_a1):
    tariff_create(
        property=property_a1,
        utility="electricity",
        name="Flat",
        actor=None,
        version={
            "effective_from": timezone.now() - timedelta(days=10),
            "kind": "flat",
            "flat_price": "1",
        },
    )
    meter = factories.MeterFactory(
        unit__property=property_a1, installed_at=timezone.now() - timedelta(days=2)
    )
    account = factories.AccountFactory(
        unit=meter.unit, opened_at=timezone.now() - timedelta(days=2)
    )
    # In credit, so charging these readings leaves nothing for the cut-off check to do.
    factories.TopupFactory(account=account, amount=Decimal("100.00"))
    return meter


def rows(meter, *points):
    now = timezone.now()
    return {
        "readings": [
            {
                "serial": meter.serial,
                "taken_at": (now - timedelta(hours=hours)).isoformat(),
                "register": value,
            }
            for hours, value in points
        ]
    }


def test_pushed_readings_are_stored_and_charged_at_once(
    meter, manager_a1, api_as, django_capture_on_commit_callbacks
):
    # The worker's side runs in-process here; the end-to-end test with a real worker and
    # broker belongs to the control loop.
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api_as(manager_a1).post(
                reverse("reading-list"), rows(meter, (2, "10.5"), (1, "12.5")), format="json"
            )
    finally:
        app.conf.task_always_eager = False
    assert response.status_code == 201, response.content
    assert response.json() == {"created": 2, "duplicates": 0}
    # The charge run, then the detection that follows it.
    assert len(callbacks) == 2
    assert Charge.objects.get().quantity == Decimal(2)


def test_a_repeated_push_is_counted_as_duplicates(meter, owner_a, api_as):
    api = api_as(owner_a)
    body = rows(meter, (1, "1"))
    api.post(reverse("reading-list"), body, format="json")
    assert api.post(reverse("reading-list"), body, format="json").json() == {
        "created": 0,
        "duplicates": 1,
    }


def test_a_batch_with_one_bad_row_stores_nothing_and_names_the_row(meter, owner_a, api_as):
    body = rows(meter, (2, "1"), (1, "-5"))
    response = api_as(owner_a).post(reverse("reading-list"), body, format="json")
    assert response.status_code == 400
    assert response.json() == {"readings": ["row 1: register cannot be negative"]}
    assert not Reading.objects.exists()


def test_nan_and_garbage_are_field_errors(meter, owner_a, api_as):
    for value in ("NaN", "Infinity", "ten"):
        response = api_as(owner_a).post(
            reverse("reading-list"), rows(meter, (1, value)), format="json"
        )
        assert response.status_code == 400, value


def test_limited_staff_cannot_push_for_other_properties_meters(property_a2, manager_a1, api_as):
    other = factories.MeterFactory(unit__property=property_a2)
    response = api_as(manager_a1).post(
        reverse("reading-list"), rows(other, (1, "1")), format="json"
    )
    assert response.status_code == 400
    assert "unknown meter" in response.json()["readings"][0]


def test_pushed_readings_carry_their_export_register_and_flags(meter, owner_a, api_as):
    body = rows(meter, (2, "1"), (1, "2"))
    body["readings"][0].update(export_register="0.125", flags=["cover_open"])
    api = api_as(owner_a)
    response = api.post(reverse("reading-list"), body, format="json")
    assert response.status_code == 201, response.content
    stored = Reading.objects.order_by("taken_at").values_list("export_register", "flags")
    assert list(stored) == [(Decimal("0.125"), ["cover_open"]), (None, None)]
    listed = api.get(reverse("reading-list")).json()["results"]
    assert [(r["export_register"], r["flags"]) for r in listed] == [
        (None, None),
        ("0.125000", ["cover_open"]),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"export_register": "-1"}, "export_register"),
        ({"export_register": "NaN"}, "export_register"),
        ({"export_register": "0.0000001"}, "export_register"),
        ({"flags": "cover_open"}, "flags"),
        ({"flags": [""]}, "flags"),
        ({"flags": ["x" * 51]}, "flags"),
        ({"flags": ["tamper"] * 17}, "flags"),
    ],
)
def test_a_bad_export_register_or_flag_is_a_field_error(meter, owner_a, api_as, change, field):
    body = rows(meter, (1, "1"))
    body["readings"][0].update(change)
    response = api_as(owner_a).post(reverse("reading-list"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()["readings"]["0"]
    assert not Reading.objects.exists()


def test_the_service_names_a_bad_export_register_by_row(meter):
    row = {"serial": meter.serial, "taken_at": timezone.now(), "register": Decimal(1)}
    meters = Meter.objects.all()
    with pytest.raises(ValidationError) as info:
        readings_ingest(
            meters=meters,
            rows=[row, {**row, "export_register": Decimal(-1)}],
            source="http",
        )
    assert info.value.message_dict == {"readings": ["row 1: export_register cannot be negative"]}
    with pytest.raises(ValidationError) as info:
        readings_ingest(meters=meters, rows=[{**row, "flags": ["ok", 3]}], source="http")
    assert info.value.message_dict == {
        "readings": ["row 0: flags must be at most 16 names of 1 to 50 characters"]
    }


def test_charging_tasks_go_to_the_billing_queue():
    from billing.tasks import charge_meters_task

    assert app.amqp.router.route({}, charge_meters_task.name)["queue"].name == "billing"

"""The tariffs pages in the access matrix.

Owners (ADMINISTER) create tariffs and add versions; the editor pages are theirs alone, GET and
POST. The list, a tariff's page and the what-if comparison are for everyone who may read money
(VIEW). What-if takes a POST too, a draft from the editor, which it prices without saving: it
only reads, so it needs no more than VIEW.
"""

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from prepaid.scoping import Capability
from tariffs.services import tariff_create
from tests.staff_matrix import StaffUrl

FLAT = {"kind": "flat", "flat_price": "1.00"}


def _tariff(prop) -> dict:
    tariff = tariff_create(
        property=prop,
        utility="electricity",
        name="Residential",
        actor=None,
        version={"effective_from": datetime(2025, 1, 1, tzinfo=UTC), **FLAT},
    )
    return {"tariff_id": tariff.uuid}


def _draft(**extra) -> dict:
    return {
        "kind": "flat",
        "shown_kind": "flat",
        "flat_price": "1.20",
        "standing_charge_per_day": "0",
        "tax_percent": "0",
        "tax_mode": "exclusive",
        **extra,
    }


def _in_a_week() -> str:
    return (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")


def _last_month() -> str:
    first = timezone.now().date().replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


STAFF_URLS = {
    "tariffs:list": StaffUrl(),
    "tariffs:create": StaffUrl(
        kwargs=lambda prop: {"property_id": prop.uuid},
        read=Capability.ADMINISTER,
        post=Capability.ADMINISTER,
        post_data=lambda kwargs: _draft(
            name="Water", utility="water", effective_from="2025-01-01T00:00"
        ),
    ),
    "tariffs:detail": StaffUrl(kwargs=_tariff),
    "tariffs:version-add": StaffUrl(
        kwargs=_tariff,
        read=Capability.ADMINISTER,
        post=Capability.ADMINISTER,
        post_data=lambda kwargs: _draft(effective_from=_in_a_week(), action="save"),
    ),
    "tariffs:what-if": StaffUrl(
        kwargs=_tariff,
        post=Capability.VIEW,
        post_data=lambda kwargs: _draft(**{"what-if-month": _last_month()}),
    ),
}

from prepaid.scoping import Capability
from tests.staff_matrix import StaffUrl


def _property(prop):
    return {"property_id": prop.uuid}


def _close(kwargs):
    # A month the new property cannot close yet: a role allowed to close is answered 400, not 403.
    return {"month": "2026-10-01", "note": ""}


STAFF_URLS = {
    "billing:periods": StaffUrl(kwargs=_property, post=Capability.CLOSE_PERIODS, post_data=_close),
}

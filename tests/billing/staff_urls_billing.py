import uuid

from prepaid.scoping import Capability
from tests.factories import AccountFactory, TopupFactory
from tests.staff_matrix import StaffUrl


def _account(prop):
    return {"account_id": AccountFactory(unit__property=prop).uuid}


def _receipt(prop):
    return {"receipt_id": TopupFactory(account__unit__property=prop).uuid}


def _property(prop):
    return {"property_id": prop.uuid}


def _topup(kwargs):
    return {"amount": "10.00", "channel": "cash", "idempotency_key": str(uuid.uuid4())}


def _policy(kwargs):
    return {
        "warning_levels": "50, 20, 10",
        "warning_days": "",
        "cutoff_threshold": "0",
        "restore_threshold": "0",
        "grace_minutes": "0",
        "protected_from": "18:00",
        "protected_to": "08:00",
        "protect_holidays": "on",
    }


STAFF_URLS = {
    "billing:topup": StaffUrl(kwargs=_account, post=Capability.OPERATE, post_data=_topup),
    "billing:receipt": StaffUrl(kwargs=_receipt),
    "billing:receipt-pdf": StaffUrl(kwargs=_receipt),
    "billing:policy": StaffUrl(kwargs=_property, post=Capability.ADMINISTER, post_data=_policy),
    "billing:policy-preview": StaffUrl(kwargs=_property, query={"protect_weekends": "on"}),
}

from prepaid.scoping import Capability
from tests.billing.bills import issued_bill
from tests.factories import AccountFactory
from tests.staff_matrix import StaffUrl


def _property(prop):
    return {"property_id": prop.uuid}


def _account(prop):
    return {"account_id": AccountFactory(unit__property=prop).uuid}


def _bill(prop):
    return {"invoice_id": issued_bill(property=prop).uuid}


def _switch(kwargs):
    return {"mode": "postpaid"}


def _credit_policy(kwargs):
    return {
        "bill_due_days": "14",
        "reminder_days": "-3, 0, 7",
        "late_fee": "0",
        "late_fee_after_days": "7",
        "overdue_cutoff_days": "30",
        "recovery_percent": "25",
        "recovery_daily_cap": "",
        "recovery_energy_minimum": "0",
        "emergency_credit_amount": "0",
        "emergency_credit_below": "0",
    }


STAFF_URLS = {
    "billing:property-bills": StaffUrl(kwargs=_property),
    "billing:bill": StaffUrl(kwargs=_bill),
    "billing:bill-pdf": StaffUrl(kwargs=_bill),
    "billing:tenancy-bills": StaffUrl(kwargs=_account),
    "billing:mode-switch": StaffUrl(kwargs=_account, post=Capability.ADMINISTER, post_data=_switch),
    "billing:credit-policy": StaffUrl(
        kwargs=_property, post=Capability.ADMINISTER, post_data=_credit_policy
    ),
}

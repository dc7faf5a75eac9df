import uuid
from decimal import Decimal

from accounts.models import Account
from billing import debts
from billing.models import CreditPolicy
from prepaid.scoping import Capability
from tests.factories import AccountFactory
from tests.staff_matrix import StaffUrl


def _account(prop):
    return {"account_id": AccountFactory(unit__property=prop).uuid}


def _offering(prop):
    """A tenancy at a property that offers emergency credit."""
    CreditPolicy.objects.get_or_create(
        property=prop,
        defaults={"emergency_credit_amount": Decimal(20), "emergency_credit_below": Decimal(10)},
    )
    return _account(prop)


def _debt(prop):
    debt = debts.debt_raise(
        account=AccountFactory(unit__property=prop),
        amount=Decimal(90),
        reason="Arrears",
        counter="fees",
        actor=None,
        idempotency_key=str(uuid.uuid4()),
    )
    return {"debt_id": debt.uuid}


def _raise(kwargs):
    return {
        "amount": "10.00",
        "counter": "fees",
        "reason": "A fee",
        "idempotency_key": str(uuid.uuid4()),
    }


def _move_in(kwargs):
    # The tenancy itself, still open: found in scope, and refused by the service.
    return {"from": str(kwargs["account_id"])}


def _plan(kwargs):
    today = debts.local_today(
        property=Account.objects.get(debts__uuid=kwargs["debt_id"]).unit.property
    )
    return {"instalments": f"{today.isoformat()} 90.00"}


STAFF_URLS = {
    "billing:tenancy-debts": StaffUrl(kwargs=_account),
    "billing:debt-raise": StaffUrl(
        kwargs=_account, read=Capability.ADMINISTER, post=Capability.ADMINISTER, post_data=_raise
    ),
    "billing:emergency-grant": StaffUrl(kwargs=_offering, post=Capability.OPERATE, get=False),
    "billing:debts-move-in": StaffUrl(
        kwargs=_account, post=Capability.ADMINISTER, post_data=_move_in, get=False
    ),
    "billing:debt": StaffUrl(kwargs=_debt),
    "billing:plan-create": StaffUrl(
        kwargs=_debt, read=Capability.ADMINISTER, post=Capability.ADMINISTER, post_data=_plan
    ),
    "billing:plan-cancel": StaffUrl(
        kwargs=_debt,
        post=Capability.ADMINISTER,
        post_data=lambda kwargs: {"reason": "test"},
        get=False,
    ),
}

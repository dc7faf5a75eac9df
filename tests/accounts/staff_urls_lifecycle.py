"""The tenancy pages in the access matrix: move-in, the tenancy and tenant pages, move-out and its
settlement statement (page and PDF), and the meter replacement wizard."""

import uuid

from django.utils import timezone

from accounts.lifecycle import move_out
from prepaid.scoping import Capability
from tests import factories
from tests.staff_matrix import StaffUrl


def _account(prop):
    return {"account_id": factories.AccountFactory(unit__property=prop).uuid}


def _ended(prop):
    """A tenancy moved out through the service: the settlement exists to be shown."""
    account = factories.AccountFactory(unit__property=prop)
    move_out(
        account=account,
        actor=None,
        idempotency_key=uuid.uuid4().hex,
        moved_out_at=timezone.now(),
    )
    return {"account_id": account.uuid}


def _move_in_data(kwargs):
    return {
        "idempotency_key": str(uuid.uuid4()),
        "tenant_choice": "new",
        "name": "Matrix Tenant",
        "preferred_language": "en",
        "mode": "prepaid",
        "deposit_channel": "cash",
        "topup_channel": "cash",
    }


def _move_out_data(kwargs):
    return {
        "action": "confirm",
        "idempotency_key": str(uuid.uuid4()),
        "moved_out_at": timezone.now().isoformat(),
        "refund_channel": "cash",
    }


def _meter_replace_data(kwargs):
    return {
        "action": "confirm",
        "idempotency_key": str(uuid.uuid4()),
        "final_register": "0",
        "new_serial": f"NEW-{uuid.uuid4().hex[:12]}",
        "initial_register": "0",
        "keep_connection": "yes",
    }


STAFF_URLS = {
    "accounts:move-in": StaffUrl(
        kwargs=lambda prop: {"unit_id": factories.UnitFactory(property=prop).uuid},
        read=Capability.OPERATE,
        post=Capability.OPERATE,
        post_data=_move_in_data,
    ),
    "accounts:account": StaffUrl(kwargs=_account),
    "accounts:tenant": StaffUrl(
        kwargs=lambda prop: {"tenant_id": factories.AccountFactory(unit__property=prop).tenant.uuid}
    ),
    "accounts:move-out": StaffUrl(
        kwargs=_account,
        read=Capability.OPERATE,
        post=Capability.OPERATE,
        post_data=_move_out_data,
    ),
    "accounts:settlement": StaffUrl(kwargs=_ended),
    "accounts:settlement-pdf": StaffUrl(kwargs=_ended),
    "accounts:meter-replace": StaffUrl(
        kwargs=lambda prop: {"meter_id": factories.MeterFactory(unit__property=prop).uuid},
        read=Capability.OPERATE,
        post=Capability.OPERATE,
        post_data=_meter_replace_data,
    ),
}

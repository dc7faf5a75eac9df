"""What billing tells tenants: credit warnings, top-ups received, supply cut off and restored.

Each runs in a task after the money has committed, so a provider that fails never holds up
billing, and each is keyed so that a task run twice notifies once.
"""

from __future__ import annotations

from accounts.models import Account
from billing.models import BalanceWarning, LedgerAccount, Receipt
from meters.models import RelayCommand
from notifications.services import notify

EVENT = {
    BalanceWarning.Kind.LEVEL: "balance_low",
    BalanceWarning.Kind.DAYS: "credit_days_low",
    BalanceWarning.Kind.CUTOFF_SCHEDULED: "cutoff_scheduled",
}


def warning_notify(*, warning_id: int) -> list:
    """Tell the tenant about a warning, on the channels they chose. Safe to run twice."""
    warning = BalanceWarning.objects.select_related("account__unit__property").get(pk=warning_id)
    if warning.account.status != Account.Status.OPEN:
        # Moved out since: nobody to tell.
        return []
    context = {
        "balance": str(warning.balance),
        "currency": warning.account.unit.property.currency,
    }
    if warning.level is not None:
        context["level"] = str(warning.level)
    if warning.days_left is not None:
        context["days_left"] = str(warning.days_left)
    if warning.cutoff_at is not None:
        context["cutoff_at"] = warning.cutoff_at.isoformat()
    return notify(
        account_id=warning.account_id,
        event=EVENT[warning.kind],
        context=context,
        idempotency_key=f"warning:{warning.key}",
    )


def topup_notify(*, receipt_id: int, balance: str) -> list:
    """Tell the tenant their top-up arrived, with its receipt number and the new balance; the
    email carries the receipt as a PDF, rendered when it is sent."""
    receipt = Receipt.objects.select_related("property", "account").get(pk=receipt_id)
    if receipt.account.status != Account.Status.OPEN:
        return []
    return notify(
        account_id=receipt.account_id,
        event="topup_received",
        context={
            "amount": str(receipt.amount),
            "currency": receipt.currency,
            "receipt": receipt.display_number(),
            "receipt_uuid": str(receipt.uuid),
            "balance": balance,
        },
        idempotency_key=f"topup:{receipt.uuid}",
    )


def relay_switch_notify(*, command_id: int) -> list:
    """Tell the tenant of the meter's unit that their supply was cut off or restored; nobody
    when the unit is vacant."""
    command = RelayCommand.objects.select_related("meter").get(pk=command_id)
    meter = command.meter
    if meter.unit_id is None:
        return []
    account = (
        Account.objects.filter(unit_id=meter.unit_id, status=Account.Status.OPEN)
        .select_related("unit__property")
        .first()
    )
    if account is None:
        return []
    balance = LedgerAccount.objects.values_list("balance", flat=True).get(pk=account.wallet_id)
    return notify(
        account_id=account.pk,
        event="restore_done" if command.close else "cutoff_done",
        context={
            "balance": str(balance),
            "currency": account.unit.property.currency,
            "meter": meter.serial,
        },
        idempotency_key=f"relay:{command.uuid}",
    )

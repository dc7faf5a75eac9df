"""Switching a tenancy between prepaid and postpaid, settled at the switch moment.

- **Postpaid to prepaid**: the readings already in are charged, a final bill is issued up to
  now, and what the wallet still owes becomes a debt (source "arrears at the switch"), moved to
  the debtors book and recovered from top-ups (`billing.debts`); the open bills are marked as
  moved to that debt. The prepaid wallet starts from zero.
- **Prepaid to postpaid**: the credit is carried over as it is (nothing is posted); open debts
  stay debts.

Refused while a relay command is on its way for the unit's meters (the switch changes which
rules cut supply off), and for a closed tenancy. Audited, with the moment of the switch, which
the next bill starts from (`billing.invoices.billing_start`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Account
from billing.charging import charge_meters
from billing.invoices import MODE_SWITCH, invoice_issue
from billing.models import Debt, Invoice, LedgerAccount, LedgerTransaction
from billing.services import Entry, book_account, transaction_post
from billing.tasks import restore_supply
from meters.models import Meter, RelayCommand
from prepaid.audit.services import acting_user, audit_record


@dataclass(frozen=True)
class ModeSwitch:
    account: Account
    final_bill: Invoice | None
    debt: Debt | None


def _command_in_flight(account: Account) -> bool:
    return RelayCommand.objects.filter(
        meter__unit_id=account.unit_id, state__in=RelayCommand.ACTIVE
    ).exists()


@transaction.atomic
def account_mode_switch(
    *, account: Account, mode: str, actor, now: datetime | None = None
) -> ModeSwitch:
    """Switch the account to `mode` (see the module's docstring for what settles)."""
    if mode not in Account.Mode.values:
        raise ValidationError({"mode": _("Choose prepaid or postpaid.")})
    meters = list(
        Meter.objects.filter(unit_id=account.unit_id, removed_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    if mode == Account.Mode.PREPAID and meters:
        # What the meters reported so far belongs on the final bill. Charging locks the charge
        # cursors and then the wallet, the lock order of every charge run.
        charge_meters(meter_ids=meters, skip_locked=False)
    LedgerAccount.objects.select_for_update().filter(pk=account.wallet_id).get()
    account = (
        Account.objects.select_for_update(of=("self",), no_key=True)
        .select_related("unit__property", "wallet", "tenant")
        .get(pk=account.pk)
    )
    if account.status != Account.Status.OPEN:
        raise ValidationError(_("This tenancy has ended: its mode cannot change."))
    if account.mode == mode:
        raise ValidationError({"mode": _("The account is %(mode)s already.") % {"mode": mode}})
    if _command_in_flight(account):
        raise ValidationError(
            _(
                "A relay command is on its way to this unit's meters. Switch once it has been "
                "confirmed or has failed."
            )
        )
    now = now or timezone.now()
    previous = account.mode
    final_bill = debt = None
    if mode == Account.Mode.PREPAID:
        # Everything posted so far is booked before this instant.
        final_bill = invoice_issue(
            account=account, period_end=timezone.now(), kind=Invoice.Kind.FINAL, actor=actor
        ).invoice
        debt = _arrears_to_debt(account=account, actor=actor, now=now)
    account.mode = mode
    account.save(update_fields=["mode", "updated_at"])
    prop = account.unit.property
    audit_record(
        organisation_id=prop.organisation_id,
        property_id=prop.pk,
        actor=actor,
        action=MODE_SWITCH,
        instance=account,
        before={"mode": previous},
        after={
            "mode": mode,
            "at": now.isoformat(),
            "final_bill": str(final_bill.uuid) if final_bill else "",
            "debt": str(debt.amount) if debt else "0",
        },
    )
    if mode == Account.Mode.POSTPAID:
        # Postpaid supply is cut for overdue bills only: a prepaid cut-off for credit ends now.
        account_id = account.pk
        transaction.on_commit(lambda: restore_supply.delay(account_id))
    return ModeSwitch(account=account, final_bill=final_bill, debt=debt)


def _arrears_to_debt(*, account: Account, actor, now: datetime) -> Debt | None:
    """What the wallet owes moved to the debtors book as a debt, and the open bills marked as
    moved to it. None when the wallet owes nothing."""
    wallet = LedgerAccount.objects.get(pk=account.wallet_id)
    owed = -wallet.balance
    if owed <= 0:
        return None
    prop = account.unit.property
    posted = transaction_post(
        property=prop,
        kind=LedgerTransaction.Kind.DEBT_RAISED,
        entries=[
            Entry(wallet, owed),
            Entry(book_account(property=prop, kind=LedgerAccount.Kind.DEBTORS), -owed),
        ],
        idempotency_key=f"mode-switch:{account.uuid}:{now.isoformat()}:arrears",
        actor=actor,
        memo=f"Arrears at the switch to prepaid of {account.unit}",
    )
    debt = Debt.objects.create(
        property=prop,
        account=account,
        source=Debt.Source.SWITCH_ARREARS,
        reason=_("Arrears at the switch to prepaid"),
        currency=prop.currency,
        amount=owed,
        transaction=posted.transaction,
        created_at=now,
        created_by=acting_user(actor),
    )
    Invoice.objects.filter(account=account, status=Invoice.Status.OPEN).update(
        status=Invoice.Status.TRANSFERRED
    )
    return debt

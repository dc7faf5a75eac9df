"""Reminders of unpaid postpaid bills and missed instalments, and late fees.

The schedule is the property's `CreditPolicy.reminder_days`, in days from the due date (-3:
three days before, 0: on the day, 7: a week late), in the property's local days. Each step is
sent once per bill or instalment (a `Reminder` row, unique per step). A sweep that comes late,
after several steps have passed, sends only the latest of them: one message saying where things
stand, not a pile of stale ones.

A late fee (`CreditPolicy.late_fee`, when above zero) is posted once per bill still open
`late_fee_after_days` after its due date: its own LATE_FEE transaction, the wallet to fee
revenue, keyed by the bill, so it reaches the next bill as an adjustment.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, Property
from billing.credit_policy import credit_policy
from billing.invoices import due_at, invoice_display_number
from billing.models import (
    Instalment,
    InstalmentPlan,
    Invoice,
    LedgerAccount,
    LedgerTransaction,
    Reminder,
)
from billing.services import Entry, book_account, transaction_post
from notifications.events import Event
from notifications.services import notify
from prepaid.money import quantize
from tariffs.pricing import local_midnight

logger = logging.getLogger(__name__)


def step_due(*, steps: list[int], due_on: date, today: date) -> int | None:
    """The latest schedule step reached by `today` for something due on `due_on`."""
    reached = [step for step in steps if due_on + timedelta(days=step) <= today]
    return max(reached) if reached else None


def stage_of(step: int) -> tuple[str, str]:
    """What the texts say about a step: before, on or after the due date, and how many days."""
    stage = "before" if step < 0 else "due" if step == 0 else "after"
    return stage, str(abs(step))


def _claim(**target) -> bool:
    """Record the reminder step; False when it was sent before (or is being sent now)."""
    try:
        with transaction.atomic():
            Reminder.objects.create(sent_at=timezone.now(), **target)
    except IntegrityError:
        return False
    return True


@transaction.atomic
def invoice_remind(*, invoice: Invoice, step: int) -> bool:
    """Remind the tenant of an open bill at a schedule step, once. True when sent now."""
    if not _claim(invoice=invoice, days=step):
        return False
    stage, days = stage_of(step)
    notify(
        account_id=invoice.account_id,
        event=Event.BILL_REMINDER,
        context={
            "amount": str(quantize(invoice.amount - invoice.paid, invoice.currency)),
            "currency": invoice.currency,
            "number": invoice_display_number(invoice),
            "due_at": due_at(invoice).isoformat(),
            "stage": stage,
            "days": days,
        },
        idempotency_key=f"bill-reminder:{invoice.uuid}:{step}",
    )
    return True


@transaction.atomic
def instalment_remind(*, instalment: Instalment, step: int, property: Property) -> bool:
    """Remind the tenant of an instalment not collected in full, at a schedule step, once."""
    if not _claim(instalment=instalment, days=step):
        return False
    stage, days = stage_of(step)
    debt = instalment.plan.debt
    notify(
        account_id=debt.account_id,
        event=Event.INSTALMENT_REMINDER,
        context={
            "amount": str(quantize(instalment.outstanding, debt.currency)),
            "currency": debt.currency,
            "due_at": local_midnight(instalment.due_on, property.zone).isoformat(),
            "stage": stage,
            "days": days,
        },
        idempotency_key=f"instalment-reminder:{instalment.plan.uuid}:{instalment.number}:{step}",
    )
    return True


def late_fee_key(invoice: Invoice) -> str:
    return f"late-fee:{invoice.uuid}"


def late_fee_post(*, invoice: Invoice, fee: Decimal) -> bool:
    """Post the bill's late fee, once: the wallet to fee revenue. True when posted now."""
    prop = invoice.property
    wallet = LedgerAccount.objects.get(pk=invoice.account.wallet_id)
    posted = transaction_post(
        property=prop,
        kind=LedgerTransaction.Kind.LATE_FEE,
        entries=[
            Entry(wallet, -fee),
            Entry(book_account(property=prop, kind=LedgerAccount.Kind.FEE_REVENUE), fee),
        ],
        idempotency_key=late_fee_key(invoice),
        memo=f"Late fee: bill {invoice_display_number(invoice)}",
    )
    return posted.created


def _open_bills(prop: Property):
    return (
        Invoice.objects.filter(
            property=prop, status=Invoice.Status.OPEN, account__status=Account.Status.OPEN
        )
        .select_related("property", "account")
        .order_by("due_on", "pk")
    )


def _missed_instalments(prop: Property, until: date):
    return (
        Instalment.objects.filter(
            plan__status=InstalmentPlan.Status.ACTIVE,
            plan__debt__property=prop,
            plan__debt__account__status=Account.Status.OPEN,
            # A postpaid account's instalments are billed onto its wallet on their dates, so
            # its bill reminders cover them.
            plan__debt__account__mode=Account.Mode.PREPAID,
            due_on__lte=until,
        )
        .select_related("plan__debt")
        .order_by("due_on", "pk")
    )


def reminders_send(*, now: datetime | None = None) -> dict[str, int]:
    """For every property: remind the open bills and the instalments not collected in full at
    their schedule's latest step reached today, and post the late fees that have fallen due.
    Safe to run often and twice at once: each step and each fee happens once."""
    now = now or timezone.now()
    done: Counter[str] = Counter()
    for prop in Property.objects.order_by("pk"):
        policy = credit_policy(property=prop)
        today = now.astimezone(prop.zone).date()
        steps = list(policy.reminder_days or [])
        for invoice in _open_bills(prop).iterator(chunk_size=500):
            late_from = invoice.due_on + timedelta(days=policy.late_fee_after_days)
            if (
                policy.late_fee
                and late_from <= today
                and late_fee_post(invoice=invoice, fee=policy.late_fee)
            ):
                done["late_fees"] += 1
            step = step_due(steps=steps, due_on=invoice.due_on, today=today)
            if step is not None and invoice_remind(invoice=invoice, step=step):
                done["bill_reminders"] += 1
        if not steps:
            continue
        horizon = today - timedelta(days=min(steps))
        for instalment in _missed_instalments(prop, horizon).iterator(chunk_size=500):
            if instalment.collected >= instalment.amount:
                continue
            step = step_due(steps=steps, due_on=instalment.due_on, today=today)
            if step is not None and instalment_remind(
                instalment=instalment, step=step, property=prop
            ):
                done["instalment_reminders"] += 1
    if done:
        logger.info("Reminders: %s", dict(done))
    return dict(done)

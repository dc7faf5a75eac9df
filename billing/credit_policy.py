"""A property's credit policy: postpaid bills, debt recovery and emergency credit
(`billing.models.CreditPolicy`). Read by the bills (`billing.invoices`, `billing.reminders`) and
the debts (`billing.debts`); changed by owners on the credit policy page."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import Property
from billing.models import CreditPolicy
from prepaid.audit.services import only_fields, update_audited
from prepaid.money import is_whole_minor_units

POLICY_FIELDS = (
    "bill_due_days",
    "reminder_days",
    "late_fee",
    "late_fee_after_days",
    "overdue_cutoff_days",
    "recovery_percent",
    "recovery_daily_cap",
    "recovery_energy_minimum",
    "emergency_credit_amount",
    "emergency_credit_below",
    "emergency_credit_self_service",
)
AMOUNT_FIELDS = (
    "late_fee",
    "recovery_daily_cap",
    "recovery_energy_minimum",
    "emergency_credit_amount",
    "emergency_credit_below",
)
# Reminders further than this from the due date are not reminders any more.
MAX_REMINDER_DAYS = 90
MAX_REMINDERS = 6


def credit_policy(*, property: Property) -> CreditPolicy:
    """The property's credit policy; the defaults when it has set none."""
    try:
        return property.credit_policy
    except CreditPolicy.DoesNotExist:
        return CreditPolicy(property=property)


def reminder_steps(value) -> list[int]:
    """Reminder days as stored: distinct whole days from the due date, earliest first."""
    if not isinstance(value, list) or len(value) > MAX_REMINDERS:
        raise ValidationError(
            {"reminder_days": _("Give at most %(count)d days.") % {"count": MAX_REMINDERS}}
        )
    steps = set()
    for day in value:
        if isinstance(day, bool) or not isinstance(day, int):
            raise ValidationError({"reminder_days": _("Reminder days are whole numbers.")})
        if abs(day) > MAX_REMINDER_DAYS:
            raise ValidationError(
                {
                    "reminder_days": _("Remind at most %(days)d days from the due date.")
                    % {"days": MAX_REMINDER_DAYS}
                }
            )
        steps.add(day)
    return sorted(steps)


@transaction.atomic
def credit_policy_update(*, property: Property, actor, **changes) -> CreditPolicy:
    """Change a property's rules for bills, debt recovery and emergency credit; audited."""
    only_fields(changes, POLICY_FIELDS)
    policy = CreditPolicy.objects.select_for_update().filter(property=property).first()
    if policy is None:
        policy = CreditPolicy.objects.create(property=property)
    if "reminder_days" in changes:
        changes["reminder_days"] = reminder_steps(changes["reminder_days"])
    for name in AMOUNT_FIELDS:
        amount = changes.get(name)
        if amount is None:
            continue
        if amount < 0 or not is_whole_minor_units(amount, property.currency):
            raise ValidationError(
                {
                    name: _("Give a positive amount in whole %(currency)s minor units.")
                    % {"currency": property.currency}
                }
            )
    percent = changes.get("recovery_percent")
    if percent is not None and not Decimal(0) < percent <= Decimal(100):
        raise ValidationError({"recovery_percent": _("Recover more than 0% and at most 100%.")})
    update_audited(
        instance=policy,
        changes=changes,
        actor=actor,
        action="credit_policy.update",
        organisation_id=property.organisation_id,
        property_id=property.pk,
    )
    return policy

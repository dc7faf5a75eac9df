"""The double-entry ledger.

Sign convention: a posting's amount is positive when it credits the account. Every account's
balance is the sum of its postings, so a tenant's wallet, revenue and tax payable carry positive
balances, and cash and clearing accounts (assets) carry negative ones; reports show assets on
the debit side. Every transaction's postings sum to zero in one currency.

Posted amounts are whole minor units of the currency. Charges are computed exactly (see
`tariffs.pricing`) and recorded unrounded in `Charge`; what reaches the ledger is the rounded
running total minus what was already posted, so the sub-minor remainder is carried forward to the
next charge and never dropped or invented (see `billing.services.charges_post`).
"""

import uuid
from datetime import time
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS
from prepaid.scoping import ScopedQuerySet

# Exact, unrounded charge amounts: enough places that rounding to any currency is done once, at
# posting time, from an exact running total.
EXACT_MAX_DIGITS = 30
EXACT_DECIMAL_PLACES = 12


def amount_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, **kwargs
    )


def exact_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=EXACT_MAX_DIGITS, decimal_places=EXACT_DECIMAL_PLACES, **kwargs
    )


class LedgerAccountQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class LedgerAccount(models.Model):
    """An account of the double-entry ledger: a tenant's wallet, or one of a property's books."""

    class Kind(models.TextChoices):
        WALLET = "wallet", "Tenant wallet"
        ENERGY_REVENUE = "energy_revenue", "Energy revenue"
        STANDING_REVENUE = "standing_revenue", "Standing-charge revenue"
        TAX_PAYABLE = "tax_payable", "Tax payable"
        CASH = "cash", "Cash on hand"
        CLEARING = "clearing", "Payment channel clearing"
        REFUNDS_PAYABLE = "refunds_payable", "Refunds payable"
        WRITE_OFFS = "write_offs", "Write-offs"
        ROUNDING = "rounding", "Rounding"
        # Move-in deposits, a liability until move-out returns them (billing.settlement).
        DEPOSITS_HELD = "deposits_held", "Deposits held"
        # Former tenants' arrears: what a closed account still owes (an asset).
        DEBTORS = "debtors", "Debtors"
        # The balances tenants brought over from a previous system (bulk import).
        OPENING_BALANCES = "opening_balances", "Opening balances"
        # Late fees and other charges staff raise as debts (billing.invoices, billing.debts).
        FEE_REVENUE = "fee_revenue", "Fee revenue"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Clearing accounts are per payment channel ("bank", "stripe", ...).
    channel = models.CharField(max_length=30, blank=True)
    currency = models.CharField(max_length=3)
    # Stored for wallets only, where cut-off decisions read it under a row lock; it always equals
    # the sum of the wallet's postings. A property's books are hot rows shared by every tenant, so
    # their balances are summed from postings when a report needs them, never stored.
    balance = amount_field(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = LedgerAccountQuerySet.as_manager()

    class Meta:
        constraints = [
            # A property has one book of each kind (one per channel for clearing accounts);
            # wallets are one per tenant account instead.
            models.UniqueConstraint(
                fields=["property", "kind", "channel"],
                condition=~Q(kind="wallet"),
                name="ledger_account_book_unique",
            ),
            models.CheckConstraint(
                condition=Q(channel="") | Q(kind="clearing"),
                name="ledger_account_channel_only_clearing",
            ),
            models.CheckConstraint(
                condition=Q(kind="wallet") | Q(balance=0),
                name="ledger_account_balance_only_wallets",
            ),
        ]

    def __str__(self) -> str:
        suffix = f" {self.channel}" if self.channel else ""
        return f"{self.get_kind_display()}{suffix} ({self.currency})"


class LedgerTransactionQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class LedgerTransaction(models.Model):
    """A balanced, immutable set of postings. Corrections are reversals, never edits."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        CHARGE = "charge", "Consumption charge"
        STANDING_CHARGE = "standing_charge", "Standing charge"
        REVERSAL = "reversal", "Reversal"
        ADJUSTMENT = "adjustment", "Adjustment"
        # A refund takes the money out of the wallet into refunds payable when it starts, and
        # pays it out to the provider's clearing account when the provider confirms it.
        REFUND = "refund", "Refund"
        REFUND_PAYOUT = "refund_payout", "Refund paid out"
        # Move-out settlement (billing.settlement): a deposit taken at move-in goes to deposits
        # held, and comes back into the wallet at move-out; a balance still owed then moves
        # from the wallet to debtors, so the closed account's wallet is zero.
        DEPOSIT = "deposit", "Deposit received"
        DEPOSIT_RELEASE = "deposit_release", "Deposit returned to the wallet"
        DEBT_TRANSFER = "debt_transfer", "Debt moved to debtors"
        # Debts of open accounts (billing.debts): raised by staff (debtors against fee revenue
        # or opening balances), lent as emergency credit (debtors to the wallet), recovered from
        # a top-up (the wallet to debtors) and, on a postpaid account, an instalment billed
        # (debtors to the wallet, so it is on the next bill).
        DEBT_RAISED = "debt_raised", "Debt raised"
        EMERGENCY_CREDIT = "emergency_credit", "Emergency credit"
        DEBT_RECOVERY = "debt_recovery", "Debt recovered"
        INSTALMENT_BILLED = "instalment_billed", "Instalment billed"
        # A postpaid bill paid late (billing.reminders): the wallet to fee revenue.
        LATE_FEE = "late_fee", "Late fee"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Both led by the composite indexes below; single-column ones would only slow every posting.
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    currency = models.CharField(max_length=3)
    # Unique: a retry, a replay or a concurrent duplicate finds the original instead of posting.
    idempotency_key = models.CharField(max_length=200, unique=True)
    # What was asked for under that key, so reusing a key for something else is refused.
    fingerprint = models.CharField(max_length=64)
    # A transaction is reversed at most once; the reversal points at what it reverses.
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    # When it happened in business terms (end of the charged interval, time of payment).
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    memo = models.CharField(max_length=300, blank=True)

    objects = LedgerTransactionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["property", "effective_at"], name="ledger_txn_property_time"),
            models.Index(fields=["organisation", "created_at"], name="ledger_txn_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.uuid}"


class Posting(models.Model):
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    # Led by the posting_account index below.
    ledger_account = models.ForeignKey(
        LedgerAccount, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    amount = amount_field()

    class Meta:
        indexes = [models.Index(fields=["ledger_account", "transaction"], name="posting_account")]

    def __str__(self) -> str:
        return f"{self.amount} → {self.ledger_account_id}"


class ChargeQuerySet(ScopedQuerySet):
    organisation_lookup = "account__unit__property__organisation"
    property_lookup = "account__unit__property"


class Charge(models.Model):
    """One exact, unrounded charge to an account, with its explanation.

    The ledger receives whole minor units: the running total of an account's exact charges,
    rounded, minus what was already posted. A charge whose rounded share is still zero posts no
    transaction, but its exact amount is kept here and counts towards the next one.
    """

    class Kind(models.TextChoices):
        ENERGY = "energy", "Consumption"
        STANDING = "standing", "Standing charge"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(
        "meters.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=200, unique=True)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    quantity = exact_field()
    net = exact_field()
    tax = exact_field()
    # The lines the pricing engine produced: period, day type, band, quantity, price, amounts.
    lines = models.JSONField(default=list)
    transaction = models.ForeignKey(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="charges"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ChargeQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["account", "period_end"], name="charge_account_time"),
            models.Index(fields=["meter", "period_end"], name="charge_meter_time"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.net + self.tax}"


class ChargeTotals(models.Model):
    """An account's running totals, per kind of charge, of exact charges and of what was posted.

    posted = exact rounded to the minor unit, after every charge; the difference is the carried
    remainder, under half a minor unit. `verify_ledger` recomputes all four from `Charge` rows and
    postings.
    """

    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="charge_totals"
    )
    kind = models.CharField(max_length=10, choices=Charge.Kind.choices)
    exact_net = exact_field(default=0)
    exact_tax = exact_field(default=0)
    posted_net = amount_field(default=0)
    posted_tax = amount_field(default=0)

    class Meta:
        verbose_name_plural = "charge totals"
        constraints = [
            models.UniqueConstraint(fields=["account", "kind"], name="charge_totals_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.kind}: {self.posted_net + self.posted_tax}"


class TopupLimits(models.Model):
    """A property's limits on counter and online top-ups; a property without a row uses these
    defaults."""

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="topup_limits"
    )
    minimum = amount_field(default=1)
    maximum = amount_field(default=5000)
    # Against hoarding: no top-up may lift a wallet above this.
    max_balance = amount_field(default=20000)

    class Meta:
        verbose_name_plural = "top-up limits"
        constraints = [
            models.CheckConstraint(
                condition=Q(minimum__gt=0, maximum__gte=models.F("minimum")),
                name="topup_limits_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"{self.minimum} to {self.maximum}, balance at most {self.max_balance}"


class ReceiptSequence(models.Model):
    """The next receipt number of a property, taken under a row lock so numbers are gapless."""

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="receipt_sequence"
    )
    last_number = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.property_id}: {self.last_number}"


class ReceiptQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class Receipt(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Led by the receipt_number_unique index below.
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    number = models.PositiveBigIntegerField()
    transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, related_name="receipt"
    )
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    amount = amount_field()
    currency = models.CharField(max_length=3)
    channel = models.CharField(max_length=30)
    reference = models.CharField(max_length=100, blank=True)
    issued_at = models.DateTimeField()

    objects = ReceiptQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["property", "number"], name="receipt_number_unique")
        ]

    def __str__(self) -> str:
        return self.display_number()

    def display_number(self) -> str:
        return f"{self.property.code}-{self.number:08d}"


class ChargeCursor(models.Model):
    """How far a meter's readings have been charged: the last accepted reading.

    Charging locks the cursor, so two workers never charge the same meter at once, and moves it
    in the same transaction as the charges it posts, so a crash or a retry charges nothing twice.
    """

    meter = models.OneToOneField("meters.Meter", on_delete=models.PROTECT, related_name="+")
    taken_at = models.DateTimeField(null=True, blank=True)
    register = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.meter_id} @ {self.taken_at}"


class TierUsage(models.Model):
    """An account's consumption of one utility in one local month, for tiered prices."""

    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    utility = models.CharField(max_length=12)
    # The first day of the property's local month.
    month = models.DateField()
    quantity = models.DecimalField(max_digits=EXACT_MAX_DIGITS, decimal_places=EXACT_DECIMAL_PLACES)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "utility", "month"], name="tier_usage_unique_month"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.utility} {self.month}: {self.quantity}"


def default_warning_levels() -> list[str]:
    return ["50", "20", "10"]


class BalancePolicy(models.Model):
    """A property's prepaid rules: when supply is cut off and restored, and when it never is
    cut off automatically. A property without a row uses these defaults."""

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="balance_policy"
    )
    # Balances, in the property's currency, at which tenants are warned as they fall through.
    warning_levels = models.JSONField(default=default_warning_levels, blank=True)
    # Also warn when the estimated days of credit left fall to this; None: no such warning.
    warning_days = models.PositiveSmallIntegerField(null=True, blank=True)
    # Cut off at or below this balance; below zero is emergency credit.
    cutoff_threshold = amount_field(default=0)
    # Restore once the balance is above this again.
    restore_threshold = amount_field(default=0)
    # How long a balance must stay at or below the threshold before the cut-off.
    grace_minutes = models.PositiveIntegerField(default=0)
    # Local daily hours when nobody is cut off (wrapping midnight when `to` comes first).
    protected_from = models.TimeField(null=True, blank=True, default=time(18))
    protected_to = models.TimeField(null=True, blank=True, default=time(8))
    protect_weekends = models.BooleanField(default=False)
    # The property's public holidays and its own days off.
    protect_holidays = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "balance policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(restore_threshold__gte=models.F("cutoff_threshold")),
                name="balance_policy_restore_above_cutoff",
            ),
            models.CheckConstraint(
                condition=Q(protected_from__isnull=True, protected_to__isnull=True)
                | Q(protected_from__isnull=False, protected_to__isnull=False),
                name="balance_policy_hours_paired",
            ),
        ]

    def __str__(self) -> str:
        return f"cut off at {self.cutoff_threshold}, restore above {self.restore_threshold}"


class CutoffDecisionQuerySet(ScopedQuerySet):
    organisation_lookup = "account__unit__property__organisation"
    property_lookup = "account__unit__property"


class CutoffDecision(models.Model):
    """What the cut-off check decided for an account, and why: the record staff and tenants
    are shown when supply was, or was not, cut."""

    class Outcome(models.TextChoices):
        CUT = "cut", "Cut off"
        DEFERRED_PROTECTED = "deferred_protected", "Deferred: protected period"
        DEFERRED_GRACE = "deferred_grace", "Deferred: grace period"
        SKIPPED_PROTECTED_ACCOUNT = "skipped_protected_account", "Skipped: protected account"
        SKIPPED_RECOVERED = "skipped_recovered", "Skipped: the balance recovered"
        RESTORED = "restored", "Restored"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField()
    outcome = models.CharField(max_length=30, choices=Outcome.choices)
    balance = amount_field()
    # For a deferral: when the check runs again.
    until = models.DateTimeField(null=True, blank=True)
    command = models.ForeignKey(
        "meters.RelayCommand", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = CutoffDecisionQuerySet.as_manager()

    class Meta:
        ordering = ["-decided_at", "-id"]
        indexes = [models.Index(fields=["account", "decided_at"], name="cutoff_decision_account")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.outcome} at {self.balance}"


class BalanceWarningQuerySet(ScopedQuerySet):
    organisation_lookup = "account__unit__property__organisation"
    property_lookup = "account__unit__property"


class BalanceWarning(models.Model):
    """A warning a tenant was sent about their credit: the record of what fired, when and why.

    `key` makes each warning fire once: a level per downward crossing (the posting that crossed
    it), the days-left warning once per top-up, the run-out warning once per protected period.
    """

    class Kind(models.TextChoices):
        LEVEL = "level", "Balance fell through a warning level"
        DAYS = "days", "Few days of credit left"
        CUTOFF_SCHEDULED = "cutoff_scheduled", "Credit runs out before a protected period ends"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=200, unique=True)
    balance = amount_field()
    level = amount_field(null=True, blank=True)
    days_left = models.DecimalField(max_digits=6, decimal_places=1, null=True, blank=True)
    # For a scheduled cut-off: when supply will be cut unless the tenant tops up.
    cutoff_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    objects = BalanceWarningQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "created_at"], name="balance_warning_account")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.kind} at {self.balance}"


# Daily freeze ------------------------------------------------------------------------------------

# Registers and consumption, to the precision readings are stored with.
REGISTER_MAX_DIGITS = 20
REGISTER_DECIMAL_PLACES = 6


def register_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=REGISTER_MAX_DIGITS, decimal_places=REGISTER_DECIMAL_PLACES, **kwargs
    )


class FreezeCursor(models.Model):
    """How far a property's local days are frozen: every day up to `frozen_through` has its
    rows. A run locks it, so two workers never freeze the same property at once, and moves it
    in the same transaction as the rows it writes (see `billing.freeze`)."""

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="freeze_cursor"
    )
    # None until the first day is frozen.
    frozen_through = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.property_id} frozen through {self.frozen_through}"


class MeterFreezeQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class MeterFreeze(models.Model):
    """A meter's register at the local midnight that closes `day`, and that day's consumption.

    For a meter installed or removed during the day, the day runs from its installation to its
    removal. Immutable: a reading that arrives after the freeze changes no frozen row.
    """

    class Method(models.TextChoices):
        ACTUAL = "actual", "Read at midnight"
        INTERPOLATED = "interpolated", "Interpolated between the readings either side"
        CARRIED_FORWARD = "carried_forward", "Carried forward from the last reading"

    # Led by the unique (meter, day) index. No database constraint: the freeze's one INSERT ...
    # SELECT takes every id from meters_meter itself, and checking a million rows a night at
    # commit took 17 of 64 s (`make bench BENCH=daily-freeze`). Django's PROTECT still refuses
    # to delete a meter with frozen days, and nothing deletes meters.
    meter = models.ForeignKey(
        "meters.Meter",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # The meter's property, copied for the (property, day) index, which leads it; no database
    # constraint, for the same reason.
    property = models.ForeignKey(
        "accounts.Property",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    day = models.DateField()
    register = register_field()
    method = models.CharField(max_length=16, choices=Method.choices)
    estimated = models.BooleanField()
    consumption = register_field()

    objects = MeterFreezeQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "day"], name="meter_freeze_unique_day"),
            models.CheckConstraint(
                condition=Q(consumption__gte=0), name="meter_freeze_consumption_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(method="actual", estimated=False)
                | (~Q(method="actual") & Q(estimated=True)),
                name="meter_freeze_estimated_unless_actual",
            ),
        ]
        indexes = [models.Index(fields=["property", "day"], name="meter_freeze_property_day")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.day}: {self.register} ({self.method})"


class DailyFreezeQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


# Invariant 8, as the database checks it. On PostgreSQL the amounts are exact with four places,
# so anything under half a ten-thousandth is zero and this is plain equality; SQLite keeps
# decimals as binary floating point, where 0.1 + 0.2 - 0.3 is not zero, and needs the margin.
_BALANCE_MOVEMENT = (
    models.F("opening_balance")
    + models.F("topups")
    - models.F("energy_net")
    - models.F("energy_tax")
    - models.F("standing_net")
    - models.F("standing_tax")
    - models.F("refunds")
    + models.F("adjustments")
)
_HALF_LAST_PLACE = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES) / 2


class DailyFreeze(models.Model):
    """A tenant account's wallet over one local day: its balance at the midnights either side
    and the money that moved in between, by component, and what its unit's meters measured.

    opening + top-ups - charges - refunds + adjustments = closing, always (invariant 8).
    Charges are energy and standing charges, each net and tax. Refunds are money paid back out
    of the wallet; adjustments are adjustments and reversals, signed (+ credits the wallet).
    Money belongs to the day of its book time (see `billing.freeze`).
    """

    # Led by the unique (account, day) index. No database constraints, as for MeterFreeze: the
    # ids come from accounts_account in the same statement, and PROTECT keeps the account.
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # The account's property, copied for the (property, day) index, which leads it.
    property = models.ForeignKey(
        "accounts.Property",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    day = models.DateField()
    currency = models.CharField(max_length=3)
    opening_balance = amount_field()
    topups = amount_field()
    energy_net = amount_field()
    energy_tax = amount_field()
    standing_net = amount_field()
    standing_tax = amount_field()
    refunds = amount_field()
    adjustments = amount_field()
    closing_balance = amount_field()
    # What the unit's meters measured while the account occupied it (pro rata by time on the
    # days it moved in or out).
    electricity = register_field()
    water = register_field()
    # The last local day of a month: the month is closed, and the account's tier counters
    # (TierUsage) for it are recorded here as they stood when it closed.
    month_end = models.BooleanField(default=False)
    month_electricity = exact_field(null=True, blank=True)
    month_water = exact_field(null=True, blank=True)

    objects = DailyFreezeQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "day"], name="daily_freeze_unique_day"),
            models.CheckConstraint(
                condition=Q(closing_balance__gt=_BALANCE_MOVEMENT - _HALF_LAST_PLACE)
                & Q(closing_balance__lt=_BALANCE_MOVEMENT + _HALF_LAST_PLACE),
                name="daily_freeze_balances_add_up",
            ),
            models.CheckConstraint(
                condition=Q(month_end=True)
                | Q(month_electricity__isnull=True, month_water__isnull=True),
                name="daily_freeze_tiers_only_at_month_end",
            ),
        ]
        indexes = [models.Index(fields=["property", "day"], name="daily_freeze_property_day")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day}: {self.opening_balance} → {self.closing_balance}"


# Period close ------------------------------------------------------------------------------------


class PeriodCursor(models.Model):
    """How far a property's months are closed: every local day up to `closed_through` (the last
    day of the latest closed month) is closed to postings.

    A posting dated before the current local month reads it under a shared lock, and closing a
    month takes it for update, so a close and a posting into the month it closes never both
    commit (see `billing.periods`).
    """

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="period_cursor"
    )
    # None until the first month is closed.
    closed_through = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.property_id} closed through {self.closed_through}"


class ClosedPeriodQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class ClosedPeriod(models.Model):
    """A property's local month, closed: nothing more is posted dated in it. Immutable."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Led by the unique (property, month) index below.
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # The first local day of the month.
    month = models.DateField()
    closed_at = models.DateTimeField()
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True)

    objects = ClosedPeriodQuerySet.as_manager()

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["property", "month"], name="closed_period_unique"),
            models.CheckConstraint(condition=Q(month__day=1), name="closed_period_month_first_day"),
        ]

    def __str__(self) -> str:
        return f"{self.property_id} {self.month:%Y-%m} closed"


# Postpaid bills, debts and their recovery --------------------------------------------------------


def default_reminder_days() -> list[int]:
    return [-3, 0, 7]


class CreditPolicy(models.Model):
    """A property's rules for postpaid bills, debt recovery and emergency credit. A property
    without a row uses these defaults."""

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="credit_policy"
    )
    # Postpaid bills: due this many days after they are issued.
    bill_due_days = models.PositiveSmallIntegerField(default=14)
    # Reminders of an unpaid bill or instalment, in days from its due date (-3: three days
    # before, 0: on the day, 7: a week late).
    reminder_days = models.JSONField(default=default_reminder_days, blank=True)
    # Posted once per bill still unpaid this many days after it fell due; zero: no late fee.
    late_fee = amount_field(default=0)
    late_fee_after_days = models.PositiveSmallIntegerField(default=7)
    # Cut a postpaid account off (through the balance policy's protected periods and protected
    # accounts) once a bill is this many days overdue; None: never.
    overdue_cutoff_days = models.PositiveSmallIntegerField(null=True, blank=True, default=30)
    # Debt recovery from each top-up of a prepaid account.
    recovery_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(25))
    # At most this much recovered per local day; None: no cap.
    recovery_daily_cap = amount_field(null=True, blank=True)
    # Of each top-up, at least this much always goes to energy.
    recovery_energy_minimum = amount_field(default=0)
    # Emergency credit: an advance of this amount, once per local month, while the balance is
    # below `emergency_credit_below`; zero: not offered.
    emergency_credit_amount = amount_field(default=0)
    emergency_credit_below = amount_field(default=0)
    # Whether tenants may take it themselves from the portal (staff always may grant it).
    emergency_credit_self_service = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "credit policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(recovery_percent__gt=0, recovery_percent__lte=100),
                name="credit_policy_recovery_percent",
            ),
            models.CheckConstraint(
                condition=Q(late_fee__gte=0, recovery_energy_minimum__gte=0)
                & Q(emergency_credit_amount__gte=0)
                & (Q(recovery_daily_cap__isnull=True) | Q(recovery_daily_cap__gt=0)),
                name="credit_policy_amounts_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"bills due in {self.bill_due_days} days, recover {self.recovery_percent}%"


class InvoiceSequence(models.Model):
    """The next invoice number of a property, taken under a row lock so numbers are gapless."""

    property = models.OneToOneField(
        "accounts.Property", on_delete=models.CASCADE, related_name="invoice_sequence"
    )
    last_number = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.property_id}: {self.last_number}"


class InvoiceQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class Invoice(models.Model):
    """A postpaid account's bill for a period: a document of what the ledger already holds.

    The wallet carries the debt; the invoice says how it arose (`lines`, from the period's
    charges) and how much of it this bill asks for. `amount` is what the bill added to the open
    bills before it: the amount owed at the period's end less what earlier bills still had open,
    never below zero, so the open bills together never ask for more than the wallet owes.
    Payments are allocated to the oldest open bill first (`InvoiceAllocation`).
    """

    class Kind(models.TextChoices):
        MONTHLY = "monthly", "Monthly bill"
        # Issued at a switch to prepaid, or at a move-out, for the part of the month until then.
        FINAL = "final", "Final bill"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        # Its open amount became a debt recovered from top-ups (a switch to prepaid).
        TRANSFERRED = "transferred", "Moved to a debt"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    property = models.ForeignKey("accounts.Property", on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="invoices"
    )
    # Gapless per property, from InvoiceSequence.
    number = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MONTHLY)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    # The first local day of the month billed.
    month = models.DateField()
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    issued_at = models.DateTimeField()
    due_on = models.DateField()
    currency = models.CharField(max_length=3)
    # The wallet at the period's start and end, and what moved in between (signed as in
    # DailyFreeze: + credits the wallet).
    previous_balance = amount_field()
    payments = amount_field()
    charges = amount_field()
    adjustments = amount_field()
    closing_balance = amount_field()
    # What this bill asks for (see above), and how much of it payments have met so far.
    amount = amount_field()
    paid = amount_field(default=0)
    # What the bill says, line by line: energy per time-of-use period and tier, standing
    # charges, tax, fees; each {"component", "label", "quantity", "unit", "price", "net", "tax"}.
    lines = models.JSONField(default=list)
    # The tenant's language when it was issued, for its PDF and email.
    language = models.CharField(max_length=10)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-issued_at", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["property", "number"], name="invoice_number_unique"),
            # One bill per account and period end: issuing again finds the first.
            models.UniqueConstraint(
                fields=["account", "period_end"], name="invoice_one_per_period"
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0, paid__gte=0, paid__lte=models.F("amount")),
                name="invoice_paid_within_amount",
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid=models.F("amount")),
                name="invoice_paid_in_full",
            ),
        ]
        indexes = [models.Index(fields=["account", "status", "due_on"], name="invoice_open")]

    def __str__(self) -> str:
        return f"Invoice {self.number}"


class InvoiceAllocation(models.Model):
    """Part of a payment (a top-up's ledger transaction) that met part of a bill. A reversed
    payment gives its allocations back with negative rows, never by deleting these."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="+")
    amount = amount_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "transaction"], name="invoice_allocation_once"
            ),
            models.CheckConstraint(condition=~Q(amount=0), name="invoice_allocation_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} → invoice {self.invoice_id}"


class DebtQuerySet(ScopedQuerySet):
    organisation_lookup = "property__organisation"
    property_lookup = "property"


class Debt(models.Model):
    """What an open account owes apart from its wallet, held in the property's debtors book and
    recovered from top-ups (a percentage of each, or by an instalment plan)."""

    class Source(models.TextChoices):
        SWITCH_ARREARS = "switch_arrears", "Arrears at the switch to prepaid"
        MOVE_IN_TRANSFER = "move_in_transfer", "Moved from an earlier tenancy"
        ADJUSTMENT = "adjustment", "Raised by staff"
        EMERGENCY_CREDIT = "emergency_credit", "Emergency credit"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLEARED = "cleared", "Cleared"
        # Moved on, whole, to a later tenancy of the same tenant.
        TRANSFERRED = "transferred", "Moved to a later tenancy"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    property = models.ForeignKey("accounts.Property", on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey("accounts.Account", on_delete=models.PROTECT, related_name="debts")
    source = models.CharField(max_length=20, choices=Source.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    reason = models.CharField(max_length=300, blank=True)
    currency = models.CharField(max_length=3)
    amount = amount_field()
    # Recovered so far, under the wallet's lock; the debt is cleared when it reaches `amount`.
    recovered = amount_field(default=0)
    # The ledger transaction that raised it; none for a debt moved from an earlier tenancy of
    # the same property, which stays in the same debtors book.
    transaction = models.OneToOneField(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    transferred_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="transferred_to"
    )
    # Emergency credit: the local month it was taken in, so it is taken at most once a month.
    month = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    objects = DebtQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0, recovered__gte=0, recovered__lte=models.F("amount")),
                name="debt_recovered_within_amount",
            ),
            models.CheckConstraint(
                condition=~Q(status="cleared") | Q(recovered=models.F("amount")),
                name="debt_cleared_in_full",
            ),
            models.CheckConstraint(
                condition=Q(source="emergency_credit", month__isnull=False)
                | (~Q(source="emergency_credit") & Q(month__isnull=True)),
                name="debt_month_only_emergency",
            ),
            models.UniqueConstraint(
                fields=["account", "month"],
                condition=Q(source="emergency_credit"),
                name="debt_emergency_once_a_month",
            ),
        ]
        indexes = [models.Index(fields=["account", "status"], name="debt_open")]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.amount}"


class DebtRecovery(models.Model):
    """Part of a debt recovered by one ledger transaction: a top-up's recovery, or an
    instalment billed onto a postpaid wallet. A reversed top-up gives its recovery back with a
    negative row under the reversal of that recovery."""

    debt = models.ForeignKey(Debt, on_delete=models.PROTECT, related_name="recoveries")
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="+")
    # The top-up it was taken from, for the receipt's split; none for an instalment billed.
    topup = models.ForeignKey(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = amount_field()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["debt", "transaction"], name="debt_recovery_once"),
            models.CheckConstraint(condition=~Q(amount=0), name="debt_recovery_not_zero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} of debt {self.debt_id}"


class InstalmentPlan(models.Model):
    """A debt split by an owner into instalments with dates. While the plan is active its debt
    is recovered by the instalments, not by the percentage of each top-up."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    debt = models.ForeignKey(Debt, on_delete=models.PROTECT, related_name="plans")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["debt"], condition=Q(status="active"), name="instalment_plan_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"Plan for debt {self.debt_id}"


class Instalment(models.Model):
    """One dated part of a plan. On a prepaid account it is collected from top-ups once due; on
    a postpaid account it is billed onto the wallet on its date and so is on the next bill."""

    plan = models.ForeignKey(InstalmentPlan, on_delete=models.CASCADE, related_name="instalments")
    number = models.PositiveSmallIntegerField()
    due_on = models.DateField()
    amount = amount_field()
    collected = amount_field(default=0)

    class Meta:
        ordering = ["plan", "number"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "number"], name="instalment_number_unique"),
            models.CheckConstraint(
                condition=Q(amount__gt=0, collected__gte=0, collected__lte=models.F("amount")),
                name="instalment_collected_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"Instalment {self.number} due {self.due_on}"

    @property
    def outstanding(self) -> Decimal:
        return self.amount - self.collected


class Reminder(models.Model):
    """A reminder sent for an unpaid bill or a missed instalment, once per schedule step (days
    from its due date)."""

    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="reminders"
    )
    instalment = models.ForeignKey(
        Instalment, null=True, blank=True, on_delete=models.PROTECT, related_name="reminders"
    )
    days = models.SmallIntegerField()
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(invoice__isnull=False, instalment__isnull=True)
                | Q(invoice__isnull=True, instalment__isnull=False),
                name="reminder_of_one_thing",
            ),
            models.UniqueConstraint(
                fields=["invoice", "days"],
                condition=Q(invoice__isnull=False),
                name="reminder_invoice_once",
            ),
            models.UniqueConstraint(
                fields=["instalment", "days"],
                condition=Q(instalment__isnull=False),
                name="reminder_instalment_once",
            ),
        ]

    def __str__(self) -> str:
        return f"Reminder {self.days:+d} days"

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from billing.models import amount_field, exact_field
from prepaid.scoping import ScopedQuerySet


class Provider(models.TextChoices):
    MANUAL = "manual", "Cash or bank transfer"
    SANDBOX = "sandbox", "Sandbox"
    STRIPE = "stripe", "Stripe Checkout"
    WECHAT = "wechat", "WeChat Pay"
    ALIPAY = "alipay", "Alipay"


# The secrets each provider needs; everything else it is configured with is public settings.
PROVIDER_SECRETS: dict[str, tuple[str, ...]] = {
    Provider.MANUAL: (),
    Provider.SANDBOX: ("webhook_secret",),
    Provider.STRIPE: ("api_key", "webhook_secret"),
    Provider.WECHAT: ("merchant_private_key", "apiv3_key"),
    Provider.ALIPAY: ("app_private_key",),
}


class ProviderConfigQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = None


class ProviderConfig(models.Model):
    """How one organisation takes payments through one provider.

    Secrets are stored sealed (see `payments.secrets`) and are never shown back: readers get
    which of them are set, not their values.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="payment_providers"
    )
    provider = models.CharField(max_length=10, choices=Provider.choices)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    sealed_secrets = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProviderConfigQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "provider"], name="provider_config_one_per_org"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} ({self.organisation_id})"

    def secrets_set(self) -> dict[str, bool]:
        return {name: name in self.sealed_secrets for name in PROVIDER_SECRETS[self.provider]}


class PaymentIntentQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class PaymentIntent(models.Model):
    """One attempt by a tenant to pay online: from checkout to credit, and any refunds.

    `reference` is what the provider knows it by (out_trade_no, client_reference_id). The wallet
    is credited at most once, under the ledger key `payment:<uuid>`, whatever the provider sends.
    """

    class Status(models.TextChoices):
        CREATED = "created", "Created"
        PENDING = "pending", "Waiting for payment"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        PARTIALLY_REFUNDED = "partially_refunded", "Partly refunded"
        REFUNDED = "refunded", "Refunded"

    class Client(models.TextChoices):
        DESKTOP = "desktop", "Desktop or QR code"
        MOBILE = "mobile", "Phone"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    reference = models.CharField(max_length=32, unique=True)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+"
    )
    property = models.ForeignKey("accounts.Property", on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="payment_intents"
    )
    config = models.ForeignKey(ProviderConfig, on_delete=models.PROTECT, related_name="intents")
    provider = models.CharField(max_length=10, choices=Provider.choices)
    amount = amount_field()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CREATED)
    client = models.CharField(max_length=10, choices=Client.choices, default=Client.DESKTOP)
    provider_reference = models.CharField(max_length=200, blank=True)
    # The provider's id of the money movement; unique per provider account, so two intents can
    # never both claim one payment.
    transaction_id = models.CharField(max_length=200, blank=True)
    redirect_url = models.CharField(max_length=2000, blank=True)
    qr_code = models.CharField(max_length=2000, blank=True)
    return_url = models.CharField(max_length=500, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    expires_at = models.DateTimeField()
    # Money reserved by refunds started (pending or done); never more than `amount`.
    refunded_amount = amount_field(default=0)
    receipt = models.OneToOneField(
        "billing.Receipt", null=True, blank=True, on_delete=models.PROTECT, related_name="intent"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    # When the stranded-payment sweep last asked the provider.
    queried_at = models.DateTimeField(null=True, blank=True)

    objects = PaymentIntentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["config", "transaction_id"],
                condition=~Q(transaction_id=""),
                name="intent_transaction_unique",
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0)
                & Q(refunded_amount__gte=0)
                & Q(refunded_amount__lte=models.F("amount")),
                name="intent_refunds_within_amount",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="intent_status_created"),
            models.Index(fields=["account", "created_at"], name="intent_account_created"),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.amount} {self.currency} ({self.reference})"

    # Methods, not properties: the `property` field shadows the builtin in this class body.
    def is_credited(self) -> bool:
        return self.receipt_id is not None

    def refundable(self) -> Decimal:
        return self.amount - self.refunded_amount if self.is_credited() else Decimal(0)


class ProviderEventQuerySet(ScopedQuerySet):
    organisation_lookup = "config__organisation"
    property_lookup = "intent__property"


class ProviderEvent(models.Model):
    """Every notification a provider sent us, as received: applied, ignored or rejected.

    A verified event is stored once per provider account (its id is unique there), so a replay
    is recognised and answered without acting again. Rejected ones are kept with their reason,
    so forged or broken notifications are counted and can be looked at.
    """

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        IGNORED = "ignored", "Nothing to do"
        REJECTED = "rejected", "Rejected"

    config = models.ForeignKey(ProviderConfig, on_delete=models.PROTECT, related_name="events")
    event_id = models.CharField(max_length=200, blank=True)
    intent = models.ForeignKey(
        PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    # Where it came from: a webhook, or the answer to our own status query.
    source = models.CharField(max_length=10, default="webhook")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    reason = models.CharField(max_length=20, blank=True)
    detail = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=20, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    objects = ProviderEventQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["config", "event_id"],
                condition=~Q(outcome="rejected"),
                name="provider_event_once",
            )
        ]
        indexes = [
            models.Index(fields=["outcome", "reason", "received_at"], name="event_outcome_reason")
        ]

    def __str__(self) -> str:
        return f"{self.config.provider} {self.event_id or '?'}: {self.outcome}"


class RefundQuerySet(ScopedQuerySet):
    organisation_lookup = "intent__organisation"
    property_lookup = "intent__property"


class Refund(models.Model):
    """Money paid back through the provider. The wallet is debited when the refund starts (held
    in refunds payable), settled when the provider confirms, and given back if it fails."""

    class Status(models.TextChoices):
        PENDING = "pending", "In progress"
        SUCCEEDED = "succeeded", "Refunded"
        FAILED = "failed", "Failed"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    reference = models.CharField(max_length=64, unique=True)
    intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    amount = amount_field()
    reason = models.CharField(max_length=300)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_refund_id = models.CharField(max_length=200, blank=True)
    failure_reason = models.CharField(max_length=300, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hold_transaction = models.OneToOneField(
        "billing.LedgerTransaction", on_delete=models.PROTECT, related_name="+"
    )
    settle_transaction = models.OneToOneField(
        "billing.LedgerTransaction",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)

    objects = RefundQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_positive")]

    def __str__(self) -> str:
        return f"Refund {self.amount} of {self.intent.reference}: {self.status}"


class SandboxPayment(models.Model):
    """The sandbox provider's side of a payment: what its hosted page shows and its API
    answers. A real provider keeps this on its own servers."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PAID = "paid", "Paid"
        DECLINED = "declined", "Declined"
        EXPIRED = "expired", "Expired"

    reference = models.CharField(max_length=32, unique=True)
    amount = amount_field()
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=200)
    notify_url = models.CharField(max_length=500)
    return_url = models.CharField(max_length=500)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    transaction_id = models.CharField(max_length=40, blank=True)
    # Refunds by their reference, as strings of the amount: a retried refund is found, not
    # repeated.
    refunds = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Sandbox {self.reference}: {self.status}"


class AutoTopupQuerySet(ScopedQuerySet):
    organisation_lookup = "config__organisation"
    property_lookup = "account__unit__property"


class AutoTopup(models.Model):
    """A tenant's standing order: charge `amount` to their saved Stripe card whenever the
    balance falls below `threshold`, at most `monthly_cap` a calendar month (property time).

    `armed` is whether the balance has been at or above the threshold since the last attempt:
    only an armed fall charges, and each such fall is a numbered crossing, attempted once.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.OneToOneField(
        "accounts.Account", on_delete=models.PROTECT, related_name="autotopup"
    )
    config = models.ForeignKey(ProviderConfig, on_delete=models.PROTECT, related_name="+")
    amount = amount_field()
    threshold = amount_field()
    monthly_cap = amount_field()
    currency = models.CharField(max_length=3)
    enabled = models.BooleanField(default=True)
    armed = models.BooleanField(default=True)
    crossings = models.PositiveIntegerField(default=0)
    # The payment that saved the card, and what Stripe saved from it.
    setup_intent = models.ForeignKey(
        PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    customer_ref = models.CharField(max_length=200, blank=True)
    payment_method_ref = models.CharField(max_length=200, blank=True)
    # Failed attempts since the last success; at the limit auto top-up turns itself off.
    failures = models.PositiveSmallIntegerField(default=0)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AutoTopupQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0, threshold__gte=0, monthly_cap__gte=models.F("amount")),
                name="autotopup_amounts_valid",
            )
        ]

    def __str__(self) -> str:
        return f"Auto top-up {self.amount} {self.currency} below {self.threshold}"


class AutoTopupAttempt(models.Model):
    """One crossing of an auto top-up's threshold and what came of it: a charge (through a
    PaymentIntent, credited like any payment), or a reason it was not made."""

    class Status(models.TextChoices):
        PENDING = "pending", "Charging"
        SUCCEEDED = "succeeded", "Charged"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Not charged"

    autotopup = models.ForeignKey(AutoTopup, on_delete=models.PROTECT, related_name="attempts")
    crossing = models.PositiveIntegerField()
    amount = amount_field()
    currency = models.CharField(max_length=3)
    # The balance that fell below the threshold.
    balance = amount_field()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=300, blank=True)
    intent = models.OneToOneField(
        PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker took it on; another may take it over only after a lease has run out.
    started_at = models.DateTimeField(null=True, blank=True)
    concluded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["autotopup", "crossing"], name="autotopup_attempt_once_per_crossing"
            )
        ]
        indexes = [
            models.Index(fields=["autotopup", "created_at"], name="autotopup_attempt_month"),
            models.Index(fields=["status", "created_at"], name="autotopup_attempt_status"),
        ]

    def __str__(self) -> str:
        return f"Auto top-up {self.amount} {self.currency} #{self.crossing}: {self.status}"


# Settlement reconciliation ------------------------------------------------------------------------
# The providers' own records of the money (settlement and bill files, bank statements), imported
# and matched against our payments and refunds (payments.reconciliation, docs/reconciliation.md).


class SettlementSource(models.TextChoices):
    STRIPE = "stripe", _("Stripe balance transactions")
    WECHAT = "wechat", _("WeChat Pay trade bill")
    ALIPAY = "alipay", _("Alipay account bill")
    BANK = "bank", _("Bank statement")


class SettlementProfileQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = None


class SettlementProfile(models.Model):
    """How an organisation's files from one source are read and checked: the fee it expects
    the source to charge and, for bank statements, which column holds what."""

    class Encoding(models.TextChoices):
        AUTO = "auto", _("Detect it")
        UTF8 = "utf-8", _("UTF-8")
        GBK = "gbk", _("GBK (GB 18030)")

    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=10, choices=SettlementSource.choices)
    # The fee expected on each payment: a percentage of it plus a fixed amount. Blank: no
    # expectation, and the fee charged is reported without being checked.
    fee_percent = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    fee_fixed = amount_field(null=True, blank=True)
    # Bank statements only: the columns by their header names, and how values are written.
    currency = models.CharField(max_length=3, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    encoding = models.CharField(max_length=10, choices=Encoding.choices, default=Encoding.AUTO)
    delimiter = models.CharField(max_length=1, default=",")
    skip_rows = models.PositiveSmallIntegerField(default=0)
    date_column = models.CharField(max_length=100, blank=True)
    date_format = models.CharField(max_length=30, blank=True)
    amount_column = models.CharField(max_length=100, blank=True)
    # When the statement has money in and money out in two columns: `amount_column` is the
    # money in, and this one the money out.
    debit_column = models.CharField(max_length=100, blank=True)
    reference_column = models.CharField(max_length=100, blank=True)
    description_column = models.CharField(max_length=100, blank=True)
    id_column = models.CharField(max_length=100, blank=True)
    balance_column = models.CharField(max_length=100, blank=True)
    decimal_separator = models.CharField(max_length=1, default=".")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SettlementProfileQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "source"], name="settlement_profile_one_per_source"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} ({self.organisation_id})"


class SettlementImportQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = None

    def property_filter(self, property_ids) -> Q:
        # Staff limited to some properties see the imports that touch one of them.
        return Q(
            models.Exists(
                ReconciliationItem.objects.filter(
                    settlement_import=models.OuterRef("pk"), property_id__in=property_ids
                )
            )
        )


class SettlementImport(models.Model):
    """One settlement file, imported whole: its lines, and the period it covers."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    source = models.CharField(max_length=10, choices=SettlementSource.choices)
    # The provider account the file is from; none for bank statements.
    config = models.ForeignKey(
        ProviderConfig, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    file_name = models.CharField(max_length=200)
    sha256 = models.CharField(max_length=64)
    encoding = models.CharField(max_length=20)
    size = models.PositiveIntegerField()
    # The time zone the file's times and dates were read in.
    zone = models.CharField(max_length=64)
    # The instants the file covers, [start, end): our payments in them should all be in it.
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    # Lines stored; lines skipped because an earlier import already holds them.
    lines_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    matched_at = models.DateTimeField()

    objects = SettlementImportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The same file twice is the same import: importing it again changes nothing.
            models.UniqueConstraint(fields=["organisation", "sha256"], name="settlement_file_once")
        ]
        indexes = [
            models.Index(fields=["organisation", "created_at"], name="settlement_import_org"),
            models.Index(
                fields=["organisation", "source", "period_start"], name="settlement_import_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()}: {self.file_name}"


class SettlementLine(models.Model):
    """One line of a settlement file, normalised: signed as money into our balance there
    (payments positive, refunds and payouts negative); the fee is what the provider charged
    (negative when it gave a fee back), and net = gross - fee."""

    class Kind(models.TextChoices):
        PAYMENT = "payment", _("Payment")
        REFUND = "refund", _("Refund")
        FEE = "fee", _("Fee")
        PAYOUT = "payout", _("Payout")
        OTHER = "other", _("Other")

    settlement_import = models.ForeignKey(
        SettlementImport, on_delete=models.PROTECT, related_name="lines"
    )
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    source = models.CharField(max_length=10, choices=SettlementSource.choices)
    # What makes the line itself unique at its source (Stripe's txn_ id, Alipay's account log
    # number, ...): a line is imported once, whichever file brings it.
    identity = models.CharField(max_length=200)
    row = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    transaction_id = models.CharField(max_length=200, blank=True)
    refund_id = models.CharField(max_length=200, blank=True)
    reference = models.CharField(max_length=200, blank=True)
    refund_reference = models.CharField(max_length=200, blank=True)
    description = models.CharField(max_length=300, blank=True)
    gross = amount_field()
    # Exact: WeChat Pay states fees to a thousandth of a fen.
    fee = exact_field()
    net = exact_field()
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField()
    raw = models.JSONField(default=dict)

    class Meta:
        ordering = ["row"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "source", "identity"], name="settlement_line_once"
            )
        ]
        indexes = [models.Index(fields=["settlement_import", "row"], name="settlement_line_row")]

    def __str__(self) -> str:
        return f"{self.source} {self.identity}: {self.gross} {self.currency}"


# Why an item has its status, in a sentence, by the code stored on it.
RECONCILIATION_DETAILS = {
    "unknown": _("We have no payment with this line's ids or reference."),
    "not_credited": _("Our payment with this reference was never credited: it failed or expired."),
    "twice": _("An earlier line of the file already matched the same payment of ours."),
    "no_refund": _("We have the payment but no refund of it like this one."),
    "refund_pending": _("Our refund is not confirmed as paid out yet, or it failed."),
    "currency": _("The line's currency is not our payment's."),
    "amount": _("The line's amount is not our payment's."),
    "fee": _("The fee charged is not the fee expected."),
    "payment_fee": _("The provider's fee for one of our payments."),
    "account_fee": _("A fee that is not for one of our payments."),
    "payout": _("Money paid out to the organisation's bank account."),
    "money_out": _("Money out of the bank account."),
    "other": _("Neither a payment nor a refund."),
    "no_line": _("Ours falls in the file's period, but the file has no line for it."),
}


class ReconciliationItemQuerySet(ScopedQuerySet):
    organisation_lookup = "organisation"
    property_lookup = "property"


class ReconciliationItem(models.Model):
    """What matching found for one line of a file, or for one of our payments, refunds or bank
    top-ups that the file should have had and has not. Unmatched items are resolved by staff
    with a note."""

    class Status(models.TextChoices):
        MATCHED = "matched", _("Matched")
        MISSING_OURS = "missing_ours", _("Missing on our side")
        MISSING_PROVIDER = "missing_provider", _("Missing at the provider")
        AMOUNT_MISMATCH = "amount_mismatch", _("Amount mismatch")
        FEE_DIFFERENCE = "fee_difference", _("Fee difference")
        # Payouts, account fees and other lines that are not one of our payments.
        INFORMATION = "information", _("Nothing to match")

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    settlement_import = models.ForeignKey(
        SettlementImport, on_delete=models.PROTECT, related_name="items"
    )
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # The property of the payment matched; none when we have no such payment.
    property = models.ForeignKey(
        "accounts.Property", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    line = models.OneToOneField(
        SettlementLine, null=True, blank=True, on_delete=models.PROTECT, related_name="item"
    )
    intent = models.ForeignKey(
        PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refund = models.ForeignKey(
        Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    receipt = models.ForeignKey(
        "billing.Receipt", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=20, choices=Status.choices)
    # Why, in a word (payments.reconciliation.matching.DETAILS says it in a sentence).
    detail = models.CharField(max_length=30, blank=True)
    currency = models.CharField(max_length=3)
    provider_amount = amount_field(null=True, blank=True)
    our_amount = amount_field(null=True, blank=True)
    fee = exact_field(null=True, blank=True)
    expected_fee = amount_field(null=True, blank=True)
    occurred_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution_note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReconciliationItemQuerySet.as_manager()

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["settlement_import", "intent"],
                condition=Q(line__isnull=True, intent__isnull=False, refund__isnull=True),
                name="reconciliation_missing_intent_once",
            ),
            models.UniqueConstraint(
                fields=["settlement_import", "refund"],
                condition=Q(line__isnull=True, refund__isnull=False),
                name="reconciliation_missing_refund_once",
            ),
            models.UniqueConstraint(
                fields=["settlement_import", "receipt"],
                condition=Q(line__isnull=True, receipt__isnull=False),
                name="reconciliation_missing_receipt_once",
            ),
            models.CheckConstraint(
                condition=Q(resolved_at__isnull=True) | ~Q(resolution_note=""),
                name="reconciliation_resolved_with_note",
            ),
        ]
        indexes = [
            models.Index(fields=["settlement_import", "status"], name="reconciliation_import"),
            models.Index(fields=["property", "occurred_at"], name="reconciliation_property"),
            models.Index(fields=["organisation", "occurred_at"], name="reconciliation_org"),
        ]

    def __str__(self) -> str:
        return f"{self.get_status_display()} ({self.settlement_import_id})"

    def explanation(self) -> str:
        return str(RECONCILIATION_DETAILS.get(self.detail, ""))

    def is_open(self) -> bool:
        """Whether staff still have to look at it: neither matched nor resolved."""
        return self.status not in OPEN_EXEMPT and self.resolved_at is None


# Statuses that need no resolution.
OPEN_EXEMPT = (ReconciliationItem.Status.MATCHED, ReconciliationItem.Status.INFORMATION)

import uuid

from django.db import models
from django.db.models import Q

from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS
from prepaid.scoping import ScopedQuerySet


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

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        "accounts.Organisation", on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    property = models.ForeignKey(
        "accounts.Property", on_delete=models.PROTECT, related_name="ledger_accounts"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Clearing accounts are per payment channel ("cash", "bank", "stripe", ...).
    channel = models.CharField(max_length=30, blank=True)
    currency = models.CharField(max_length=3)
    # Kept equal to the sum of this account's postings, updated in the posting's transaction.
    balance = models.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, default=0
    )
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
        ]

    def __str__(self) -> str:
        suffix = f" {self.channel}" if self.channel else ""
        return f"{self.get_kind_display()}{suffix} ({self.currency})"

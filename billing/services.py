from accounts.models import Property
from billing.models import LedgerAccount


def wallet_create(*, property: Property) -> LedgerAccount:
    """A new, empty wallet in the property's currency for a tenant account."""
    return LedgerAccount.objects.create(
        organisation_id=property.organisation_id,
        property=property,
        kind=LedgerAccount.Kind.WALLET,
        currency=property.currency,
    )

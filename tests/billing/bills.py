"""Postpaid accounts and their bills, built through the real services, for the bills' tests."""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account
from billing.invoices import invoice_issue
from billing.models import Invoice
from billing.services import charges_post
from tests import factories


def postpaid_account(*, property, **kwargs) -> Account:
    kwargs.setdefault("opened_at", timezone.now() - timedelta(days=40))
    return factories.AccountFactory(unit__property=property, mode=Account.Mode.POSTPAID, **kwargs)


def charge(account: Account, amount: str, *, tax: str = "0") -> None:
    """An energy charge of `amount` (net) and `tax` posted to the account now."""
    charges_post(
        charges=[
            factories.ChargeInputFactory(account=account, net=Decimal(amount), tax=Decimal(tax))
        ]
    )


def issued_bill(*, property, amount: str = "80.00", account: Account | None = None) -> Invoice:
    """A bill of a postpaid account charged `amount`, issued up to now."""
    account = account or postpaid_account(property=property)
    charge(account, amount)
    return invoice_issue(account=account, period_end=timezone.now()).invoice

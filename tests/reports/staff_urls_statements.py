"""The monthly statements in the access matrix: an account's statements page and one month's
PDF. Both only read, so every staff role opens them."""

from tests import factories
from tests.staff_matrix import StaffUrl


def _frozen_account(prop):
    """An account with a frozen day, so it has a statement for that day's month."""
    row = factories.DailyFreezeFactory(account__unit__property=prop)
    return row.account, f"{row.day:%Y-%m}"


def _statements(prop):
    account, _month = _frozen_account(prop)
    return {"account_id": account.uuid}


def _statement(prop):
    account, month = _frozen_account(prop)
    return {"account_id": account.uuid, "month": month}


STAFF_URLS = {
    "reports:statements": StaffUrl(kwargs=_statements),
    "reports:statement": StaffUrl(kwargs=_statement),
}

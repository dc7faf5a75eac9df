"""The invoices report: each bill of the months in the range, tied to its allocations."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.models import InvoiceAllocation
from billing.services import topup_record
from reports.base import Filters
from reports.catalogue import REPORTS
from tests.billing.bills import issued_bill

pytestmark = pytest.mark.django_db


def test_paid_and_open_tie_to_the_allocations(property_a1):
    first = issued_bill(property=property_a1, amount="80.00")
    issued_bill(property=property_a1, amount="30.00")
    topup_record(
        account=first.account, amount=Decimal(50), channel="cash", actor=None, idempotency_key="p"
    )
    today = timezone.now().astimezone(property_a1.zone).date()
    filters = Filters(property=property_a1, start=today - timedelta(days=31), end=today, extra={})
    report = REPORTS["invoices"]
    rows = list(report.rows(filters))
    assert report.count(filters) == len(rows) == 2
    by_number = {row[0]: row for row in rows}
    assert by_number["A1-INV-000001"][8:] == (Decimal("80.00"), Decimal("50.00"), Decimal("30.00"))
    totals = report.totals(filters)
    allocated = InvoiceAllocation.objects.aggregate(total=Sum("amount"))["total"]
    assert totals[8:] == (Decimal("110.00"), allocated, Decimal("60.00"))

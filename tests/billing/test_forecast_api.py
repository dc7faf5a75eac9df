from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import services
from tests import factories

pytestmark = pytest.mark.django_db


def _spent_steadily(account, days: int, per_hour: Decimal):
    end = timezone.now().replace(minute=0, second=0, microsecond=0)
    services.charges_post(
        charges=[
            services.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"forecast:{account.pk}:{hour}",
                period_start=end - timedelta(hours=hour + 1),
                period_end=end - timedelta(hours=hour),
                quantity=Decimal(1),
                net=per_hour,
                tax=Decimal(0),
            )
            for hour in range(days * 24)
        ]
    )


def test_accounts_show_days_of_credit_left_beside_the_balance(
    property_a1, api_as, owner_a, django_assert_max_num_queries
):
    # Two whole weeks, so every hour of the week is seen twice.
    opened = timezone.now() - timedelta(days=14)
    steady = factories.AccountFactory(unit__property=property_a1, opened_at=opened)
    factories.TopupFactory(account=steady, amount=Decimal("300.00"))
    _spent_steadily(steady, days=14, per_hour=Decimal("0.5"))  # 12.00 a day, 168.00 in all
    new = factories.AccountFactory(unit__property=property_a1)
    factories.TopupFactory(account=new, amount=Decimal("10.00"))  # credit, but no history yet
    api = api_as(owner_a)
    detail = api.get(reverse("account-detail", args=[steady.uuid])).json()
    assert detail["balance"] == "132.0000"
    assert Decimal("10.9") <= Decimal(detail["days_of_credit_left"]) <= Decimal("11.1")
    with django_assert_max_num_queries(12):
        rows = api.get(reverse("account-list")).json()["results"]
    estimates = {row["id"]: row["days_of_credit_left"] for row in rows}
    assert estimates[str(new.uuid)] is None
    assert estimates[str(steady.uuid)] == detail["days_of_credit_left"]

# Period close: a property's closed months, and the cursor postings check them against.

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from prepaid.append_only import AppendOnly


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_organisation_require_two_factor"),
        ("billing", "0010_settlement_kinds"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="PeriodCursor",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("closed_through", models.DateField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "property",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="period_cursor",
                        to="accounts.property",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="ClosedPeriod",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("uuid", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("month", models.DateField()),
                ("closed_at", models.DateTimeField()),
                ("note", models.CharField(blank=True, max_length=300)),
                (
                    "closed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "property",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="accounts.property",
                    ),
                ),
            ],
            options={
                "ordering": ["-month"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("property", "month"), name="closed_period_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("month__day", 1)), name="closed_period_month_first_day"
                    ),
                ],
            },
        ),
        # A closed month stays closed.
        AppendOnly("ClosedPeriod"),
    ]

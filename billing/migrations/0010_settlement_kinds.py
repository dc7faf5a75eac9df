# Move-out settlement: books for deposits held and debtors, and the transactions between them;
# and the book imported opening balances come from.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0009_alter_ledgertransaction_kind"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ledgeraccount",
            name="kind",
            field=models.CharField(
                choices=[
                    ("wallet", "Tenant wallet"),
                    ("energy_revenue", "Energy revenue"),
                    ("standing_revenue", "Standing-charge revenue"),
                    ("tax_payable", "Tax payable"),
                    ("cash", "Cash on hand"),
                    ("clearing", "Payment channel clearing"),
                    ("refunds_payable", "Refunds payable"),
                    ("write_offs", "Write-offs"),
                    ("rounding", "Rounding"),
                    ("deposits_held", "Deposits held"),
                    ("debtors", "Debtors"),
                    ("opening_balances", "Opening balances"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="ledgertransaction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("topup", "Top-up"),
                    ("charge", "Consumption charge"),
                    ("standing_charge", "Standing charge"),
                    ("reversal", "Reversal"),
                    ("adjustment", "Adjustment"),
                    ("refund", "Refund"),
                    ("refund_payout", "Refund paid out"),
                    ("deposit", "Deposit received"),
                    ("deposit_release", "Deposit returned to the wallet"),
                    ("debt_transfer", "Debt moved to debtors"),
                ],
                max_length=20,
            ),
        ),
    ]

"""What tenants are told about, and what each message needs to say it.

Callers pass a context of strings (it travels through Celery as JSON): amounts as decimal strings
in `currency`, and moments (keys ending in `_at`) as ISO-8601 datetimes with an offset. The texts
show amounts with their currency and moments in the property's time zone. Keys ending in `_uuid`
name an object by its uuid for the event's attachments (the receipt a top-up's email carries);
they are optional, so a message without one is sent without the file.
"""

from django.db import models


class Event(models.TextChoices):
    BALANCE_LOW = "balance_low", "Balance fell through a warning level"
    CREDIT_DAYS_LOW = "credit_days_low", "Few days of credit left"
    CUTOFF_SCHEDULED = "cutoff_scheduled", "Supply will be cut off when a protected period ends"
    CUTOFF_DONE = "cutoff_done", "Supply cut off"
    RESTORE_DONE = "restore_done", "Supply restored"
    TOPUP_RECEIVED = "topup_received", "Top-up received"
    AUTOTOPUP_FAILED = "autotopup_failed", "Auto top-up could not charge the card"
    AUTOTOPUP_SKIPPED = "autotopup_skipped", "Auto top-up did not charge"
    AUTOTOPUP_DISABLED = "autotopup_disabled", "Auto top-up turned itself off"
    MONTHLY_STATEMENT = "monthly_statement", "Monthly statement"
    BILL_ISSUED = "bill_issued", "Postpaid bill issued"
    BILL_REMINDER = "bill_reminder", "Postpaid bill not paid yet"
    INSTALMENT_REMINDER = "instalment_reminder", "Instalment not paid yet"


# The context keys each event's texts use; callers must give every one of them.
CONTEXT_KEYS: dict[str, frozenset[str]] = {
    Event.BALANCE_LOW: frozenset({"balance", "currency", "level"}),
    Event.CREDIT_DAYS_LOW: frozenset({"balance", "currency", "days_left"}),
    Event.CUTOFF_SCHEDULED: frozenset({"balance", "currency", "cutoff_at"}),
    Event.CUTOFF_DONE: frozenset({"balance", "currency", "meter"}),
    Event.RESTORE_DONE: frozenset({"balance", "currency", "meter"}),
    Event.TOPUP_RECEIVED: frozenset({"amount", "currency", "receipt", "balance"}),
    Event.AUTOTOPUP_FAILED: frozenset({"amount", "currency", "balance", "reason"}),
    Event.AUTOTOPUP_SKIPPED: frozenset({"amount", "currency", "balance", "reason"}),
    Event.AUTOTOPUP_DISABLED: frozenset({"currency", "balance", "reason"}),
    # `month_start_at` is the month's first local midnight and `balance` the closing balance.
    # The statement PDF is made from the optional `account_uuid`.
    Event.MONTHLY_STATEMENT: frozenset(
        {"currency", "month_start_at", "opening_balance", "topups", "charges", "balance"}
    ),
    # `amount` is what the bill asks for, `number` its number; the PDF is made from the
    # optional `invoice_uuid`.
    Event.BILL_ISSUED: frozenset({"amount", "currency", "number", "due_at"}),
    # `amount` is what is still open; `stage` is "before", "due" or "after" the due date, and
    # `days` how many days from it.
    Event.BILL_REMINDER: frozenset({"amount", "currency", "number", "due_at", "stage", "days"}),
    Event.INSTALMENT_REMINDER: frozenset({"amount", "currency", "due_at", "stage", "days"}),
}
# Context keys that hold an amount in the context's currency.
AMOUNT_KEYS = frozenset({"amount", "balance", "level", "opening_balance", "topups", "charges"})
# The files an event's email carries, made from the notification's context when it is sent
# (never stored): a dotted path to `(*, context, language) -> list[Attachment]`. A path, not an
# import: the apps that make the files import notifications, so it cannot import them back.
ATTACHMENTS: dict[str, str] = {
    Event.TOPUP_RECEIVED: "billing.receipts.receipt_attachments",
    Event.MONTHLY_STATEMENT: "reports.statement_pdf.statement_attachments",
    Event.BILL_ISSUED: "billing.invoice_pdf.invoice_attachments",
}

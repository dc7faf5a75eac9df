"""What tenants are told about, and what each message needs to say it.

Callers pass a context of strings (it travels through Celery as JSON): amounts as decimal strings
in `currency`, and moments (keys ending in `_at`) as ISO-8601 datetimes with an offset. The texts
show amounts with their currency and moments in the property's time zone.
"""

from django.db import models


class Event(models.TextChoices):
    BALANCE_LOW = "balance_low", "Balance fell through a warning level"
    CREDIT_DAYS_LOW = "credit_days_low", "Few days of credit left"
    CUTOFF_SCHEDULED = "cutoff_scheduled", "Supply will be cut off when a protected period ends"
    CUTOFF_DONE = "cutoff_done", "Supply cut off"
    RESTORE_DONE = "restore_done", "Supply restored"
    TOPUP_RECEIVED = "topup_received", "Top-up received"


# The context keys each event's texts use; callers must give every one of them.
CONTEXT_KEYS: dict[str, frozenset[str]] = {
    Event.BALANCE_LOW: frozenset({"balance", "currency", "level"}),
    Event.CREDIT_DAYS_LOW: frozenset({"balance", "currency", "days_left"}),
    Event.CUTOFF_SCHEDULED: frozenset({"balance", "currency", "cutoff_at"}),
    Event.CUTOFF_DONE: frozenset({"balance", "currency", "meter"}),
    Event.RESTORE_DONE: frozenset({"balance", "currency", "meter"}),
    Event.TOPUP_RECEIVED: frozenset({"amount", "currency", "receipt", "balance"}),
}
# Context keys that hold an amount in the context's currency.
AMOUNT_KEYS = frozenset({"amount", "balance", "level"})

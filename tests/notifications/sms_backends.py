"""SMS backends for tests, configured through settings.SMS_BACKEND like any other."""

from notifications.sms import SmsError


class RecordingSmsBackend:
    """Takes every message and keeps it in `sent`, as (to, body)."""

    sent: list[tuple[str, str]] = []

    def send(self, to: str, body: str) -> str:
        self.sent.append((to, body))
        return f"recorded-{len(self.sent)}"


class FailingSmsBackend:
    """A provider that is down."""

    def send(self, to: str, body: str) -> str:
        raise SmsError("provider unavailable (503)")


class RefusingSmsBackend:
    """A provider that refuses the message itself, for good."""

    def send(self, to: str, body: str) -> str:
        raise SmsError(f"{to} cannot receive SMS", permanent=True)

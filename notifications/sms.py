"""Sending SMS through a provider: a one-method interface and its backends.

A backend's `send(to, body)` returns the provider's id for the message, or raises `SmsError`.
`settings.SMS_BACKEND` names the backend class by dotted path: `LogSmsBackend` (the default)
writes messages to the log for development; `TwilioSmsBackend` sends them through Twilio.
"""

import logging
import re
import uuid
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from requests import RequestException
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

logger = logging.getLogger(__name__)

# Seconds to wait for the provider before counting the attempt as failed (and retrying later).
PROVIDER_TIMEOUT = 15
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


class SmsError(Exception):
    """The provider did not take the message. `permanent` when retrying cannot help (the
    provider refused the message itself, such as a number that cannot receive SMS)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class SmsBackend(Protocol):
    def send(self, to: str, body: str) -> str: ...


def sms_backend() -> SmsBackend:
    """The configured backend, made for this send so a change of settings takes effect."""
    return import_string(settings.SMS_BACKEND)()


def phone_number(phone: str) -> str:
    """A phone number as providers take it: "+86 138 0013 8000" becomes "+8613800138000"."""
    return _PHONE_PUNCTUATION.sub("", phone)


class LogSmsBackend:
    """Development: the message goes to the log, and nowhere else."""

    def send(self, to: str, body: str) -> str:
        message_id = f"log-{uuid.uuid4()}"
        logger.info("SMS %s to %s: %s", message_id, to, body)
        return message_id


class TwilioSmsBackend:
    """Twilio's Messages API through its official SDK. Configured by TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN and a sender: TWILIO_MESSAGING_SERVICE_SID (preferred: Twilio picks the
    number) or TWILIO_FROM_NUMBER."""

    def __init__(self, *, http_client: HttpClient | None = None):
        account_sid, auth_token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
        if not account_sid or not auth_token:
            raise ImproperlyConfigured("Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN for Twilio.")
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            self.sender = {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
        elif settings.TWILIO_FROM_NUMBER:
            self.sender = {"from_": settings.TWILIO_FROM_NUMBER}
        else:
            raise ImproperlyConfigured(
                "Set TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER for Twilio."
            )
        self.client = Client(
            account_sid,
            auth_token,
            http_client=http_client or TwilioHttpClient(timeout=PROVIDER_TIMEOUT),
        )

    def send(self, to: str, body: str) -> str:
        try:
            message = self.client.messages.create(to=to, body=body, **self.sender)
        except TwilioRestException as error:
            raise SmsError(
                f"Twilio refused the message ({error.status}, code {error.code}): {error.msg}",
                # 400 is the message itself (the number, an opted-out recipient); credentials,
                # rate limits and outages are worth another try.
                permanent=error.status == 400,
            ) from error
        except TwilioServiceException as error:
            raise SmsError(
                f"Twilio refused the message ({error.status}, code {error.code}): "
                f"{error.detail or error.title}",
                permanent=error.status == 400,
            ) from error
        except RequestException as error:
            raise SmsError(f"Twilio could not be reached: {error}") from error
        return message.sid

"""Handing one rendered message to the channel that carries it."""

from collections.abc import Sequence
from email.utils import make_msgid
from typing import NamedTuple

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME

from notifications.models import Channel
from notifications.sms import SmsError, sms_backend


class Attachment(NamedTuple):
    """A file an email carries: what Django's `EmailMessage.attach` takes."""

    filename: str
    content: bytes
    mimetype: str


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def deliver(
    *,
    channel: str,
    recipient: str,
    subject: str,
    body: str,
    attachments: Sequence[Attachment] = (),
) -> str:
    """Send the message and return the provider's id for it; raise DeliveryError if it was not
    taken. Only email carries attachments. The portal needs no delivery: its messages are read
    where they are stored."""
    if channel == Channel.EMAIL:
        return _email(recipient, subject, body, attachments)
    if attachments:
        raise ValueError(f"The {channel} channel carries no attachments.")
    if channel == Channel.SMS:
        try:
            return sms_backend().send(recipient, body)
        except SmsError as error:
            raise DeliveryError(str(error), permanent=error.permanent) from error
    raise ValueError(f"The {channel} channel has nothing to deliver.")


def _email(recipient: str, subject: str, body: str, attachments: Sequence[Attachment]) -> str:
    message_id = make_msgid(domain=DNS_NAME)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient],
        headers={"Message-ID": message_id},
        attachments=list(attachments),
    )
    message.send(fail_silently=False)
    return message_id

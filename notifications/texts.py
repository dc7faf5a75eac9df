"""The words tenants get: templates per language and event, rendered strictly.

Each event has one template per language, `notifications/<language>/<event>.txt`, holding three
partials: `subject` (email subject and portal title), `body` (email and portal text) and `sms`
(short: one SMS segment where possible). Amounts arrive formatted with their currency for the
language, and moments as aware datetimes rendered in the property's time zone and the tenant's
language, so a template only writes `{{ balance }}` or `{{ cutoff_at|date:"H:i" }}`.

Texts are plain, so nothing is HTML-escaped, and a variable a template names but the context
lacks is an error rather than a blank.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.template import Context, Engine
from django.utils import timezone, translation

from notifications.events import AMOUNT_KEYS, CONTEXT_KEYS, Event
from prepaid.money import CurrencyError, Money, to_decimal, validate_currency

# The languages texts are written in, with the locale each writes amounts in.
MONEY_LOCALES = {"en": "en", "zh-hans": "zh_Hans_CN"}
LANGUAGES = tuple(MONEY_LOCALES)
DEFAULT_LANGUAGE = "en"
# Context keys that hold a number: amounts, and the days of credit left.
NUMBER_KEYS = AMOUNT_KEYS | {"days_left"}
PARTS = ("subject", "body", "sms")
_MISSING = "<<missing: %s>>"


class TemplateIncomplete(ValueError):
    """A template names a variable its event's context does not give."""


@dataclass(frozen=True)
class Text:
    subject: str
    body: str
    sms: str


@dataclass(frozen=True)
class Recipient:
    """Who the text is for and where: names the templates may use besides the event's context."""

    tenant_name: str
    property_name: str
    property_code: str
    unit_name: str
    time_zone: str


@cache
def _engine() -> Engine:
    return Engine(
        dirs=[settings.BASE_DIR / "templates"],
        loaders=[
            (
                "template_partials.loader.Loader",
                [
                    (
                        "django.template.loaders.cached.Loader",
                        ["django.template.loaders.filesystem.Loader"],
                    )
                ],
            )
        ],
        builtins=["template_partials.templatetags.partials"],
        string_if_invalid=_MISSING,
    )


def template_name(*, event: str, language: str) -> str:
    return f"notifications/{language}/{event}.txt"


def language_for(preferred: str) -> str:
    return preferred if preferred in LANGUAGES else DEFAULT_LANGUAGE


def validate_context(*, event: str, context: dict) -> None:
    """Refuse a context the event's texts cannot be rendered from, naming what is wrong."""
    if event not in Event.values:
        raise ValidationError({"event": f"{event!r} is not an event; use one of {Event.values}."})
    if not isinstance(context, dict):
        raise ValidationError({"context": "The context is a mapping of names to strings."})
    missing = sorted(CONTEXT_KEYS[event] - set(context))
    if missing:
        raise ValidationError({"context": f"The {event} event needs {', '.join(missing)}."})
    not_text = sorted(key for key, value in context.items() if not isinstance(value, str))
    if not_text:
        raise ValidationError({"context": f"Give {', '.join(not_text)} as strings."})
    try:
        validate_currency(context["currency"])
    except CurrencyError as error:
        raise ValidationError({"context": str(error)}) from None
    for key in NUMBER_KEYS & set(context):
        try:
            to_decimal(context[key])
        except ValueError:
            raise ValidationError({"context": f"{key} {context[key]!r} is not a number."}) from None
    for key in (key for key in context if key.endswith("_at")):
        _moment(key, context[key])
    for key in (key for key in context if key.endswith("_uuid")):
        try:
            uuid.UUID(context[key])
        except ValueError:
            raise ValidationError({"context": f"{key} {context[key]!r} is not a UUID."}) from None


def _moment(key: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError({"context": f"{key} {value!r} is not an ISO-8601 time."}) from None
    if timezone.is_naive(moment):
        raise ValidationError({"context": f"{key} {value!r} needs its UTC offset."})
    return moment


def _template_context(*, context: dict, recipient: Recipient, language: str) -> dict:
    values: dict = {
        "tenant_name": recipient.tenant_name,
        "property_name": recipient.property_name,
        "unit_name": recipient.unit_name,
        "unit": f"{recipient.property_code} {recipient.unit_name}",
    }
    for key, value in context.items():
        if key in AMOUNT_KEYS:
            value = Money(to_decimal(value), context["currency"]).format(MONEY_LOCALES[language])
        elif key.endswith("_at"):
            value = _moment(key, value)
        elif key == "days_left":
            value = f"{to_decimal(value).normalize():f}"
        values[key] = value
    return values


def _render(name: str, values: dict) -> str:
    text = _engine().get_template(name).render(Context(values, autoescape=False)).strip()
    if _MISSING.split("%s")[0] in text:
        raise TemplateIncomplete(f"{name} names a variable the context lacks: {text!r}")
    return text


def render(*, event: str, language: str, context: dict, recipient: Recipient) -> Text:
    """The event's subject, body and SMS text in the language, for this recipient."""
    validate_context(event=event, context=context)
    name = template_name(event=event, language=language)
    values = _template_context(context=context, recipient=recipient, language=language)
    with translation.override(language), timezone.override(ZoneInfo(recipient.time_zone)):
        parts = {part: _render(f"{name}#{part}", values) for part in PARTS}
    return Text(**parts)

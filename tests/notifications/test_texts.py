"""The words: every event in every language, amounts with their currency, times where the
tenant lives, and SMS that fit one segment."""

# Chinese texts use full-width punctuation by design.
# ruff: noqa: RUF001

import pytest
from django.core.exceptions import ValidationError

from notifications import texts
from notifications.events import CONTEXT_KEYS, Event
from notifications.services import notify
from tests import factories

SAMPLE = {
    "balance": "18.5000",
    "currency": "CNY",
    "level": "20.00",
    "days_left": "2.5",
    "cutoff_at": "2026-11-19T00:00:00+00:00",
    "meter": "SN000123",
    "amount": "100.00",
    "receipt": "A1-00000042",
    "reason": "Your card was declined.",
    "month_start_at": "2026-09-30T16:00:00+00:00",
    "opening_balance": "92.32",
    "topups": "150.00",
    "charges": "172.22",
    "number": "RSA-INV-000042",
    "due_at": "2026-12-13T16:00:00+00:00",
    "stage": "after",
    "days": "7",
}
SHANGHAI = texts.Recipient(
    tenant_name="Ada Lovelace",
    property_name="Riverside Apartments",
    property_code="RSA",
    unit_name="12-03",
    time_zone="Asia/Shanghai",
)
# GSM 03.38's basic character set: an SMS in it fits 160 characters in one segment. Anything
# else sends the whole message as UCS-2, 70 characters a segment.
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def _sample(event):
    return {key: SAMPLE[key] for key in CONTEXT_KEYS[event]}


def _render(event, language="en", recipient=SHANGHAI, **context):
    return texts.render(
        event=event, language=language, context={**_sample(event), **context}, recipient=recipient
    )


@pytest.mark.parametrize("language", texts.LANGUAGES)
@pytest.mark.parametrize("event", Event.values)
def test_every_event_has_every_text_in_every_language(event, language):
    text = _render(event, language)
    assert text.subject
    assert "\n" not in text.subject
    assert text.body
    assert text.sms


@pytest.mark.parametrize("event", Event.values)
def test_english_sms_fit_one_segment(event):
    sms = _render(event).sms
    assert set(sms) <= GSM_7, set(sms) - GSM_7
    assert len(sms) <= 160


@pytest.mark.parametrize("event", Event.values)
def test_chinese_sms_fit_one_segment(event):
    assert len(_render(event, "zh-hans").sms) <= 70


def test_a_variable_the_context_lacks_is_an_error_not_a_blank():
    with pytest.raises(texts.TemplateIncomplete, match="balance"):
        texts._render("notifications/en/balance_low.txt#sms", {"unit": "RSA 12-03"})


def test_amounts_are_shown_with_their_currency_to_its_minor_unit():
    assert "CN¥18.50, below CN¥20.00" in _render("balance_low").sms
    assert "当前余额¥18.50，已低于¥20.00" in _render("balance_low", "zh-hans").sms
    yen = _render("topup_received", amount="1000", currency="JPY", balance="1500")
    assert "top-up of ¥1,000 received" in yen.sms


def test_numbers_must_be_numbers():
    with pytest.raises(ValidationError, match="days_left 'soon' is not a number"):
        _render("credit_days_low", days_left="soon")
    with pytest.raises(ValidationError, match="balance '1,50' is not a number"):
        _render("credit_days_low", balance="1,50")


def test_days_left_read_naturally():
    assert _render("credit_days_low", days_left="1.0").subject == "About 1 day of credit left"
    assert _render("credit_days_low", days_left="2.5").subject == "About 2.5 days of credit left"


def test_texts_are_plain_not_html_escaped():
    recipient = texts.Recipient(**{**SHANGHAI.__dict__, "tenant_name": "O'Brien & Sons"})
    assert "Dear O'Brien & Sons," in _render("cutoff_done", recipient=recipient).body


class TestScheduledCutoff:
    def test_the_time_is_the_propertys_local_time_in_english(self):
        text = _render("cutoff_scheduled")
        assert "cut off on Thu 19 Nov at 08:00" in text.sms
        assert "cut off on Thursday 19 November at 08:00" in text.body
        assert text.subject == "Top up before Thursday 08:00 to keep your supply on"

    def test_the_time_is_the_propertys_local_time_in_chinese(self):
        text = _render("cutoff_scheduled", "zh-hans")
        assert "将于11月19日 08:00停止供电/供水" in text.sms
        assert "将于11月19日（星期四）08:00停止供电/供水" in text.body

    def test_another_time_zone_shows_its_own_clock(self):
        new_york = texts.Recipient(**{**SHANGHAI.__dict__, "time_zone": "America/New_York"})
        assert "Wed 18 Nov at 19:00" in _render("cutoff_scheduled", recipient=new_york).sms

    def test_a_time_that_is_not_one_is_refused(self):
        with pytest.raises(ValidationError, match="not an ISO-8601 time"):
            _render("cutoff_scheduled", cutoff_at="tomorrow morning")

    def test_a_time_without_its_offset_is_refused(self):
        with pytest.raises(ValidationError, match="UTC offset"):
            _render("cutoff_scheduled", cutoff_at="2026-11-19T08:00:00")

    @pytest.mark.django_db
    def test_notify_tells_the_tenant_in_the_time_of_their_property(self):
        account = factories.AccountFactory(
            unit__property__time_zone="Europe/London", tenant__preferred_language="zh-hans"
        )
        [email, *_] = notify(
            account_id=account.pk,
            event="cutoff_scheduled",
            context=_sample("cutoff_scheduled"),
            idempotency_key="cutoff_scheduled:1",
        )
        assert email.subject == "停供提醒：请在11月19日 00:00前充值"

"""Telling tenants: the right channels, in their language, once per key, with retries."""

# Chinese texts use full-width punctuation by design.
# ruff: noqa: RUF001

import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connections, transaction

from accounts.services import account_close, tenant_link_login
from notifications.models import Notification
from notifications.services import (
    MAX_ATTEMPTS,
    REQUEUE_AFTER,
    RETRY_DELAYS,
    channel_preference_update,
    notification_send,
    notifications_retry_due,
    notifications_retry_failed,
    notify,
    portal_message_read,
)
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

Status = Notification.Status
TOPUP = {"amount": "50.00", "currency": "CNY", "receipt": "A1-00000007", "balance": "62.50"}
NOON = datetime(2026, 11, 18, 4, tzinfo=UTC)


def _notify(account, key="topup:7", event="topup_received", context=TOPUP):
    return notify(account_id=account.pk, event=event, context=context, idempotency_key=key)


def _by_channel(notifications):
    return {notification.channel: notification for notification in notifications}


class TestNotify:
    def test_the_tenant_is_told_on_every_channel_they_can_be_reached_on(self, tenant_account):
        told = _by_channel(_notify(tenant_account))
        assert sorted(told) == ["email", "portal", "sms"]
        assert told["email"].recipient == "ada@example.test"
        assert told["sms"].recipient == "+8613800138000"
        assert told["email"].subject == "Top-up of CN¥50.00 received (receipt A1-00000007)"
        assert "Dear Ada Lovelace," in told["email"].body
        assert told["sms"].subject == ""
        assert told["sms"].body.startswith("A1 U")
        assert "receipt A1-00000007" in told["sms"].body

    def test_email_and_sms_wait_for_the_queue_while_the_portal_has_its_message_at_once(
        self, tenant_account
    ):
        told = _by_channel(_notify(tenant_account))
        for channel in ("email", "sms"):
            assert (told[channel].status, told[channel].attempts) == (Status.QUEUED, 0)
            assert told[channel].sent_at is None
        portal = told["portal"]
        assert (portal.status, portal.attempts, portal.recipient) == (Status.SENT, 1, "")
        assert portal.sent_at is not None
        assert portal.body == told["email"].body

    def test_the_log_keeps_the_template_language_and_context(self, tenant_account):
        email = _by_channel(_notify(tenant_account))["email"]
        assert email.template == "notifications/en/topup_received.txt"
        assert (email.language, email.event, email.context) == ("en", "topup_received", TOPUP)

    def test_a_tenant_who_reads_chinese_is_told_in_chinese(self, property_a1):
        account = factories.AccountFactory(
            unit__property=property_a1, tenant__preferred_language="zh-hans"
        )
        told = _by_channel(_notify(account))
        assert told["email"].language == "zh-hans"
        assert told["email"].template == "notifications/zh-hans/topup_received.txt"
        assert told["email"].subject == "充值成功：¥50.00（收据号 A1-00000007）"
        assert "您好" in told["email"].body
        assert "充值¥50.00已到账" in told["sms"].body

    def test_a_tenant_without_an_email_address_gets_no_email(self, property_a1):
        account = factories.AccountFactory(unit__property=property_a1, tenant__email="")
        assert sorted(_by_channel(_notify(account))) == ["portal", "sms"]

    def test_a_tenant_without_a_phone_gets_no_sms(self, property_a1):
        account = factories.AccountFactory(unit__property=property_a1, tenant__phone="")
        assert sorted(_by_channel(_notify(account))) == ["email", "portal"]

    def test_a_channel_the_tenant_turned_off_is_skipped(self, tenant_account):
        channel_preference_update(tenant=tenant_account.tenant, actor=None, sms=False)
        assert sorted(_by_channel(_notify(tenant_account))) == ["email", "portal"]

    def test_a_tenant_who_turned_everything_off_is_not_told(self, tenant_account):
        channel_preference_update(
            tenant=tenant_account.tenant, actor=None, email=False, sms=False, portal=False
        )
        assert _notify(tenant_account) == []

    def test_the_same_key_notifies_once(self, tenant_account, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks() as first_sends:
            first = _notify(tenant_account)
        with django_capture_on_commit_callbacks() as repeat_sends:
            repeat = _notify(tenant_account)
        assert [row.pk for row in repeat] == sorted(row.pk for row in first)
        assert Notification.objects.count() == 3
        assert (len(first_sends), len(repeat_sends)) == (2, 0)

    def test_a_key_used_for_another_event_is_refused(self, tenant_account):
        _notify(tenant_account)
        context = {"balance": "5.00", "currency": "CNY", "meter": "SN1"}
        with pytest.raises(ValidationError, match="already used"):
            _notify(tenant_account, event="cutoff_done", context=context)

    def test_a_key_too_long_to_store_is_refused(self, tenant_account):
        with pytest.raises(ValidationError, match="1 to 200 characters"):
            _notify(tenant_account, key="k" * 201)

    def test_an_unknown_event_is_refused(self, tenant_account):
        with pytest.raises(ValidationError, match="not an event"):
            _notify(tenant_account, event="balance_exploded")

    def test_a_context_missing_what_the_texts_need_is_refused(self, tenant_account):
        with pytest.raises(ValidationError, match="needs receipt"):
            _notify(tenant_account, context={"amount": "1", "currency": "CNY", "balance": "1"})

    def test_amounts_travel_as_strings_never_floats(self, tenant_account):
        with pytest.raises(ValidationError, match="as strings"):
            _notify(tenant_account, context={**TOPUP, "amount": 50.0})

    def test_a_closed_account_is_refused(self, tenant_account):
        account_close(account=tenant_account, actor=None)
        with pytest.raises(ValidationError, match="open accounts"):
            _notify(tenant_account)

    def test_email_and_sms_are_sent_through_the_notify_queue_after_commit(
        self, tenant_account, published_tasks, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            told = _by_channel(_notify(tenant_account))
            assert published_tasks == []
        assert sorted(published_tasks) == sorted(
            ("notifications.tasks.send_notification", "notify", f"({told[channel].pk},)")
            for channel in ("email", "sms")
        )


class TestSending:
    def test_an_email_is_sent_and_recorded(self, tenant_account, mailoutbox):
        email = _by_channel(_notify(tenant_account))["email"]
        assert notification_send(notification_id=email.pk) == Status.SENT
        [message] = mailoutbox
        assert (message.to, message.subject, message.body) == (
            ["ada@example.test"],
            email.subject,
            email.body,
        )
        email.refresh_from_db()
        assert (email.status, email.attempts, email.last_error) == (Status.SENT, 1, "")
        assert email.provider_message_id == message.extra_headers["Message-ID"]
        assert email.sent_at is not None
        assert email.next_attempt_at is None

    def test_an_sms_goes_through_the_configured_backend(self, tenant_account, sms_outbox):
        sms = _by_channel(_notify(tenant_account))["sms"]
        assert notification_send(notification_id=sms.pk) == Status.SENT
        assert sms_outbox == [("+8613800138000", sms.body)]
        sms.refresh_from_db()
        assert sms.provider_message_id == "recorded-1"

    def test_a_message_is_sent_once_however_often_its_task_runs(self, tenant_account, sms_outbox):
        sms = _by_channel(_notify(tenant_account))["sms"]
        for _ in range(3):
            notification_send(notification_id=sms.pk)
        assert len(sms_outbox) == 1

    def test_a_portal_message_has_nothing_to_send(self, tenant_account):
        portal = _by_channel(_notify(tenant_account))["portal"]
        assert notification_send(notification_id=portal.pk) == Status.SENT

    def test_a_missing_notification_is_reported_not_raised(self, db):
        assert notification_send(notification_id=0) == "missing"


class TestRetries:
    def test_a_failing_provider_leaves_the_message_queued_for_a_later_attempt(
        self, tenant_account, sms_down
    ):
        with time_machine.travel(NOON, tick=False):
            sms = _by_channel(_notify(tenant_account))["sms"]
            assert notification_send(notification_id=sms.pk) == Status.QUEUED
        sms.refresh_from_db()
        assert (sms.status, sms.attempts) == (Status.QUEUED, 1)
        assert sms.last_error == "provider unavailable (503)"
        assert sms.next_attempt_at == NOON + timedelta(minutes=1)
        assert sms.enqueued_at is None

    def test_a_retry_before_it_is_due_does_nothing(self, tenant_account, sms_down):
        with time_machine.travel(NOON, tick=False):
            sms = _by_channel(_notify(tenant_account))["sms"]
            notification_send(notification_id=sms.pk)
            assert notification_send(notification_id=sms.pk) == "not due"
        sms.refresh_from_db()
        assert sms.attempts == 1

    def test_the_message_is_sent_on_a_later_retry(
        self, tenant_account, settings, sms_down, django_capture_on_commit_callbacks
    ):
        with time_machine.travel(NOON, tick=False):
            sms = _by_channel(_notify(tenant_account))["sms"]
            notification_send(notification_id=sms.pk)
        settings.SMS_BACKEND = "tests.notifications.sms_backends.RecordingSmsBackend"
        with time_machine.travel(NOON + timedelta(minutes=1), tick=False):
            with django_capture_on_commit_callbacks() as enqueued:
                assert notifications_retry_due() == 1
            assert len(enqueued) == 1
            assert notification_send(notification_id=sms.pk) == Status.SENT
        sms.refresh_from_db()
        assert (sms.status, sms.attempts) == (Status.SENT, 2)
        assert sms.sent_at == NOON + timedelta(minutes=1)

    def test_attempts_back_off_and_the_message_fails_after_the_last(self, tenant_account, sms_down):
        with time_machine.travel(NOON, tick=False):
            sms = _by_channel(_notify(tenant_account))["sms"]
        moment, waits = NOON, []
        for _ in range(MAX_ATTEMPTS):
            with time_machine.travel(moment, tick=False):
                notification_send(notification_id=sms.pk)
            sms.refresh_from_db()
            if sms.next_attempt_at is not None:
                waits.append(sms.next_attempt_at - moment)
                moment = sms.next_attempt_at
        assert waits == list(RETRY_DELAYS)
        assert (sms.status, sms.attempts, sms.next_attempt_at) == (
            Status.FAILED,
            MAX_ATTEMPTS,
            None,
        )
        assert sms.last_error == "provider unavailable (503)"

    def test_a_message_the_provider_refuses_for_good_fails_at_once(self, tenant_account, settings):
        settings.SMS_BACKEND = "tests.notifications.sms_backends.RefusingSmsBackend"
        sms = _by_channel(_notify(tenant_account))["sms"]
        assert notification_send(notification_id=sms.pk) == Status.FAILED
        sms.refresh_from_db()
        assert (sms.attempts, sms.last_error) == (1, "+8613800138000 cannot receive SMS")

    def test_a_mail_server_that_is_down_counts_as_a_failed_attempt(self, tenant_account, settings):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        email = _by_channel(_notify(tenant_account))["email"]
        assert notification_send(notification_id=email.pk) == Status.QUEUED
        email.refresh_from_db()
        assert email.attempts == 1
        assert email.last_error.startswith("ConnectionRefusedError")

    def test_retry_due_enqueues_only_due_messages_not_already_waiting(
        self, property_a1, sms_down, published_tasks, django_capture_on_commit_callbacks
    ):
        def sms_of(key):
            account = factories.AccountFactory(unit__property=property_a1, tenant__email="")
            channel_preference_update(tenant=account.tenant, actor=None, portal=False)
            [sms] = _notify(account, key=key)
            return sms

        with time_machine.travel(NOON, tick=False):
            failed_once = sms_of("failed-once")
            notification_send(notification_id=failed_once.pk)
            failed_later = sms_of("failed-later")
        with time_machine.travel(NOON + timedelta(minutes=1), tick=False):
            notification_send(notification_id=failed_later.pk)
        lost = sms_of("lost")
        Notification.objects.filter(pk=lost.pk).update(
            next_attempt_at=NOON, enqueued_at=NOON + timedelta(minutes=1) - REQUEUE_AFTER
        )
        waiting = sms_of("waiting")
        Notification.objects.filter(pk=waiting.pk).update(
            next_attempt_at=NOON, enqueued_at=NOON + timedelta(seconds=30)
        )
        published_tasks.clear()
        with django_capture_on_commit_callbacks(execute=True):
            count = notifications_retry_due(now=NOON + timedelta(minutes=1))
        assert count == 2
        assert sorted(args for _, _, args in published_tasks) == sorted(
            f"({notification.pk},)" for notification in (failed_once, lost)
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert notifications_retry_due(now=NOON + timedelta(minutes=1)) == 0


@pytest.mark.django_db(transaction=True)
def test_a_message_locked_by_one_worker_is_left_alone_by_another(property_a1, sms_outbox):
    account = factories.AccountFactory(unit__property=property_a1, tenant__email="")
    [sms, _portal] = _notify(account)
    locked, release = threading.Event(), threading.Event()

    def other_worker():
        with transaction.atomic():
            Notification.objects.select_for_update().get(pk=sms.pk)
            locked.set()
            release.wait(10)
        connections.close_all()

    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert locked.wait(10)
        assert notification_send(notification_id=sms.pk) == "busy"
    finally:
        release.set()
        worker.join()
    assert sms_outbox == []
    assert notification_send(notification_id=sms.pk) == Status.SENT


class TestStaffRetry:
    def test_failed_messages_get_a_fresh_set_of_attempts_and_it_is_audited(
        self, tenant_account, settings, owner_a, django_capture_on_commit_callbacks
    ):
        settings.SMS_BACKEND = "tests.notifications.sms_backends.RefusingSmsBackend"
        told = _by_channel(_notify(tenant_account))
        notification_send(notification_id=told["sms"].pk)
        with django_capture_on_commit_callbacks() as enqueued:
            count = notifications_retry_failed(
                notification_ids=[told["sms"].pk, told["email"].pk, told["portal"].pk],
                actor=owner_a,
            )
        assert (count, len(enqueued)) == (1, 1)
        sms = Notification.objects.get(pk=told["sms"].pk)
        assert (sms.status, sms.attempts) == (Status.QUEUED, 0)
        row = AuditLog.objects.get(action="notification.retry")
        assert (row.actor, row.object_id) == (owner_a, str(sms.uuid))
        assert row.before == {"status": "failed", "attempts": 1, "next_attempt_at": None}


class TestPortal:
    def test_the_tenant_marks_a_portal_message_read_once(self, tenant_account):
        login = factories.UserFactory()
        tenant_link_login(tenant=tenant_account.tenant, user=login, actor=None)
        portal = _by_channel(_notify(tenant_account))["portal"]
        first = portal_message_read(notification=portal, tenant_user=login).read_at
        assert first is not None
        assert portal_message_read(notification=portal, tenant_user=login).read_at == first

    def test_another_login_cannot_read_the_tenants_messages(self, tenant_account):
        portal = _by_channel(_notify(tenant_account))["portal"]
        with pytest.raises(Notification.DoesNotExist):
            portal_message_read(notification=portal, tenant_user=factories.UserFactory())

    def test_email_is_not_a_portal_message(self, tenant_account):
        login = factories.UserFactory()
        tenant_link_login(tenant=tenant_account.tenant, user=login, actor=None)
        email = _by_channel(_notify(tenant_account))["email"]
        with pytest.raises(Notification.DoesNotExist):
            portal_message_read(notification=email, tenant_user=login)


class TestChannelPreferences:
    def test_a_change_of_channels_is_audited(self, tenant_account, owner_a):
        preference = channel_preference_update(
            tenant=tenant_account.tenant, actor=owner_a, sms=False
        )
        assert (preference.email, preference.sms, preference.portal) == (True, False, True)
        row = AuditLog.objects.get(action="notification_channels.update")
        assert (row.actor, row.before, row.after) == (owner_a, {"sms": True}, {"sms": False})

    def test_only_channels_can_be_chosen(self, tenant_account):
        with pytest.raises(ValidationError):
            channel_preference_update(tenant=tenant_account.tenant, actor=None, fax=True)

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from meters.models import Alarm, RelayCommand
from meters.relay import (
    Outcome,
    relay_command_claim,
    relay_command_issue,
    relay_command_record,
    relay_commands_resume,
    relay_state_observed,
)
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def meter(property_a1):
    return factories.MeterFactory(unit__property=property_a1, has_relay=True)


def issue(meter, close, **kwargs):
    return relay_command_issue(meter=meter, close=close, actor=None, reason="test", **kwargs)


def test_a_cut_off_is_queued_audited_and_sent_to_the_commands_queue(
    meter, owner_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        command = relay_command_issue(meter=meter, close=False, actor=owner_a, reason="arrears")
    assert (command.state, command.close) == ("queued", False)
    assert len(callbacks) == 1
    row = AuditLog.objects.get(action="relay.cut_off")
    assert (row.actor, row.reason) == (owner_a, "arrears")


def test_the_same_wish_twice_is_one_command(meter):
    assert issue(meter, False) == issue(meter, False)
    assert RelayCommand.objects.count() == 1


def test_a_restore_after_a_cut_off_supersedes_it(meter):
    cut = issue(meter, False)
    restore = issue(meter, True)
    cut.refresh_from_db()
    assert (cut.state, cut.superseded_by) == ("superseded", restore)
    assert relay_command_claim(command_id=cut.pk) is None
    assert relay_command_claim(command_id=restore.pk).state == "sent"


def test_a_stale_result_never_overrides_a_newer_command(meter):
    cut = issue(meter, False)
    relay_command_claim(command_id=cut.pk)
    restore = issue(meter, True)
    relay_command_record(command_id=cut.pk, outcome=Outcome(observed_closed=False))
    cut.refresh_from_db()
    assert cut.state == "superseded"
    assert RelayCommand.objects.get(pk=restore.pk).state == "queued"


def test_a_confirmed_read_back_finishes_the_command_and_stores_the_relay_state(meter):
    command = issue(meter, False)
    relay_command_claim(command_id=command.pk)
    relay_command_record(command_id=command.pk, outcome=Outcome(observed_closed=False))
    command.refresh_from_db()
    meter.refresh_from_db()
    assert command.state == "confirmed"
    assert (meter.relay_closed, meter.relay_confirmed_at is not None) == (False, True)


def test_no_answer_retries_with_growing_backoff(meter):
    command = issue(meter, False)
    waits = []
    for _ in range(3):
        claimed = relay_command_claim(command_id=command.pk)
        assert claimed is not None
        relay_command_record(command_id=command.pk, outcome=Outcome(None, "timeout"))
        command.refresh_from_db()
        assert (command.state, command.last_error) == ("queued", "timeout")
        waits.append(command.next_attempt_at - timezone.now())
        assert relay_command_claim(command_id=command.pk) is None
        RelayCommand.objects.filter(pk=command.pk).update(next_attempt_at=timezone.now())
    assert waits[0] < waits[1] < waits[2]


def test_a_command_that_never_confirms_fails_at_its_deadline_with_an_alarm(meter):
    command = issue(meter, True, deadline=timezone.now() + timedelta(seconds=3))
    relay_command_claim(command_id=command.pk)
    relay_command_record(command_id=command.pk, outcome=Outcome(observed_closed=False))
    command.refresh_from_db()
    assert command.state == "queued"
    relay_command_claim_after_wait = RelayCommand.objects.filter(pk=command.pk)
    relay_command_claim_after_wait.update(next_attempt_at=timezone.now())
    relay_command_claim(command_id=command.pk)
    relay_command_record(command_id=command.pk, outcome=Outcome(observed_closed=False))
    command.refresh_from_db()
    assert command.state == "failed"
    # The alarm raised at the first failure, now critical.
    alarm = Alarm.objects.get(meter=meter, kind="command_failed")
    assert alarm.closed_at is None
    assert alarm.severity == "critical"
    assert "Could not restore supply" in alarm.message


def test_an_offline_meter_keeps_the_command_queued_and_raises_an_alarm_at_once(meter):
    command = issue(meter, False)
    relay_command_claim(command_id=command.pk)
    relay_command_record(command_id=command.pk, outcome=Outcome(None, "no answer from the meter"))
    command.refresh_from_db()
    assert command.state == "queued"
    alarm = Alarm.objects.get(meter=meter, kind="command_failed", closed_at__isnull=True)
    assert alarm.severity == "warning"
    assert "no answer from the meter" in alarm.message
    assert "Retrying until" in alarm.message


def test_an_expired_command_is_not_sent(meter):
    command = issue(meter, False, deadline=timezone.now() - timedelta(seconds=1))
    assert relay_command_claim(command_id=command.pk) is None
    command.refresh_from_db()
    assert command.state == "expired"
    assert Alarm.objects.filter(meter=meter, kind="command_failed").exists()


def test_a_later_confirmation_clears_the_failure_alarm(meter):
    failed = issue(meter, False, deadline=timezone.now() - timedelta(seconds=1))
    relay_command_claim(command_id=failed.pk)
    command = issue(meter, False)
    relay_command_claim(command_id=command.pk)
    relay_command_record(command_id=command.pk, outcome=Outcome(observed_closed=False))
    assert not Alarm.objects.filter(
        meter=meter, kind="command_failed", closed_at__isnull=True
    ).exists()


def test_meters_without_a_relay_cannot_be_switched(property_a1):
    plain = factories.MeterFactory(unit__property=property_a1, has_relay=False)
    with pytest.raises(ValidationError, match="no relay"):
        issue(plain, False)


def test_the_database_allows_one_active_command_per_meter(meter):
    issue(meter, False)
    with pytest.raises(IntegrityError), transaction.atomic():
        RelayCommand.objects.create(
            meter=meter, close=True, reason="x", deadline=timezone.now() + timedelta(minutes=1)
        )


def test_a_report_naming_another_command_confirms_nothing_but_shows_the_relay(meter):
    command = issue(meter, close=False)
    relay_command_claim(command_id=command.pk)
    assert relay_state_observed(meter_id=meter.pk, closed=False, command_uuid="other") is None
    assert RelayCommand.objects.get(pk=command.pk).state == "sent"
    meter.refresh_from_db()
    assert meter.relay_closed is False
    confirmed = relay_state_observed(
        meter_id=meter.pk, closed=False, command_uuid=str(command.uuid)
    )
    assert confirmed.state == "confirmed"


def _commands_queued() -> int:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("commands")


def test_a_command_whose_task_was_lost_is_sent_again_by_the_resume_job(meter):
    command = issue(meter, False)
    later = timezone.now() + timedelta(minutes=1)
    before = _commands_queued()
    assert relay_commands_resume(now=later) == {"lost": 0, "resumed": 1}
    assert _commands_queued() == before + 1
    command.refresh_from_db()
    assert command.state == "queued"


def test_a_command_not_yet_overdue_is_left_to_its_own_task(meter):
    issue(meter, False)
    assert relay_commands_resume() == {"lost": 0, "resumed": 0}


def test_an_attempt_lost_mid_way_counts_as_failed_and_is_retried(meter):
    command = issue(meter, False)
    relay_command_claim(command_id=command.pk)
    assert relay_commands_resume(now=timezone.now() + timedelta(minutes=5))["lost"] == 1
    command.refresh_from_db()
    assert (command.state, command.attempts) == ("queued", 1)
    assert "attempt 1 was lost" in command.last_error

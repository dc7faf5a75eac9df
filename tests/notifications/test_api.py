"""The notification log and tenants' channels over the API."""

import pytest
from django.urls import reverse

from notifications.models import Notification
from notifications.services import notify
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

CUTOFF = {"balance": "-1.00", "currency": "CNY", "meter": "SN000001"}


@pytest.fixture
def account(property_a1):
    return factories.AccountFactory(unit__property=property_a1, tenant__phone="")


def _cut_off(account, key="cutoff:1"):
    return notify(account_id=account.pk, event="cutoff_done", context=CUTOFF, idempotency_key=key)


class TestNotificationLog:
    def test_staff_read_what_tenants_were_told(self, account, accountant_a, api_as):
        email, _portal = _cut_off(account)
        response = api_as(accountant_a).get(reverse("notification-detail", args=[email.uuid]))
        assert response.status_code == 200
        body = response.json()
        assert body["account"] == str(account.uuid)
        assert body["tenant"] == str(account.tenant.uuid)
        assert (body["event"], body["channel"], body["status"]) == (
            "cutoff_done",
            "email",
            "queued",
        )
        assert (body["subject"], body["body"]) == (email.subject, email.body)
        assert body["context"] == CUTOFF

    def test_the_log_filters_by_status_channel_event_and_account(
        self, account, property_a1, owner_a, api_as, django_assert_max_num_queries
    ):
        email, portal = _cut_off(account)
        other = factories.AccountFactory(unit__property=property_a1)
        factories.NotificationFactory(account=other)
        other_portal = Notification.objects.get(account=other, channel="portal")
        api = api_as(owner_a)

        def listed(**filters):
            response = api.get(reverse("notification-list"), filters)
            assert response.status_code == 200, response.content
            return {row["id"] for row in response.json()["results"]}

        assert listed(status="sent") == {str(portal.uuid), str(other_portal.uuid)}
        assert listed(channel="email", event="cutoff_done") == {str(email.uuid)}
        assert listed(account=str(account.uuid)) == {str(email.uuid), str(portal.uuid)}
        assert len(listed(event="topup_received")) == 3
        with django_assert_max_num_queries(4):
            listed()

    def test_another_organisations_notification_is_not_found(self, account, owner_b, api_as):
        email, _portal = _cut_off(account)
        api = api_as(owner_b)
        assert api.get(reverse("notification-detail", args=[email.uuid])).status_code == 404
        assert api.get(reverse("notification-list")).json()["results"] == []

    def test_the_log_cannot_be_written(self, account, owner_a, api_as):
        email, _portal = _cut_off(account)
        api = api_as(owner_a)
        url = reverse("notification-detail", args=[email.uuid])
        assert api.patch(url, {"status": "sent"}).status_code == 405
        assert api.delete(url).status_code == 405


class TestChannelPreferences:
    def test_a_tenant_who_never_chose_has_every_channel_on_where_reachable(
        self, account, manager_a1, api_as
    ):
        url = reverse("notification-preference-detail", args=[account.tenant.uuid])
        response = api_as(manager_a1).get(url)
        assert response.status_code == 200
        assert response.json() == {
            "tenant": str(account.tenant.uuid),
            "email": True,
            "sms": True,
            "portal": True,
            # No phone number: SMS is chosen but cannot reach the tenant.
            "active_channels": ["email", "portal"],
            "updated_at": None,
        }

    def test_staff_change_the_channels_and_it_is_audited(self, account, manager_a1, api_as):
        url = reverse("notification-preference-detail", args=[account.tenant.uuid])
        response = api_as(manager_a1).patch(url, {"email": False})
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["email"], body["sms"], body["portal"]) == (False, True, True)
        assert body["active_channels"] == ["portal"]
        row = AuditLog.objects.get(action="notification_channels.update")
        assert (row.actor, row.before, row.after) == (manager_a1, {"email": True}, {"email": False})
        assert [n.channel for n in _cut_off(account)] == ["portal"]

    def test_accountants_read_but_cannot_change_the_channels(self, account, accountant_a, api_as):
        url = reverse("notification-preference-detail", args=[account.tenant.uuid])
        api = api_as(accountant_a)
        assert api.get(url).status_code == 200
        assert api.patch(url, {"email": False}).status_code == 403

    def test_a_channel_must_be_on_or_off(self, account, owner_a, api_as):
        url = reverse("notification-preference-detail", args=[account.tenant.uuid])
        response = api_as(owner_a).patch(url, {"sms": "sometimes"})
        assert response.status_code == 400
        assert "sms" in response.json()

    def test_every_visible_tenant_is_listed_with_their_channels(
        self, account, property_a1, owner_a, api_as
    ):
        quiet = factories.AccountFactory(unit__property=property_a1).tenant
        api = api_as(owner_a)
        api.patch(reverse("notification-preference-detail", args=[quiet.uuid]), {"sms": False})
        rows = {
            row["tenant"]: row
            for row in api.get(reverse("notification-preference-list")).json()["results"]
        }
        assert rows[str(quiet.uuid)]["active_channels"] == ["email", "portal"]
        assert rows[str(account.tenant.uuid)]["active_channels"] == ["email", "portal"]

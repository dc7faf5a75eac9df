"""Every API endpoint is scoped to the caller's organisation and properties.

The matrix is built from the router, so a new endpoint is covered the moment it is registered:
it needs an entry in OBJECT_MAKERS, or `test_every_endpoint_is_in_the_matrix` fails.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

import meters
from accounts import services
from billing import services as billing
from billing.control import cutoff_evaluate
from billing.models import BalanceWarning
from meters.alarms import alarm_raise
from meters.models import Reading
from meters.relay import relay_command_issue
from meters.services import gateway_create, meter_profile_create
from prepaid.api.urls import router
from prepaid.audit.models import AuditLog
from tariffs.services import tariff_create
from tests import factories

pytestmark = pytest.mark.django_db


def _audit_row(prop):
    return AuditLog.objects.filter(property=prop).latest("created_at")


def _receipt(prop):
    account = factories.AccountFactory(unit__property=prop)
    return billing.topup_record(
        account=account,
        amount=Decimal("10.00"),
        channel="cash",
        actor=None,
        idempotency_key=f"matrix:{uuid.uuid4()}",
    ).receipt


def _cutoff_decision(prop):
    account = factories.AccountFactory(unit__property=prop)
    factories.MeterFactory(unit=account.unit, has_relay=True)
    # Noon on a Wednesday in Shanghai: nothing protects the account.
    return cutoff_evaluate(account_id=account.pk, now=datetime(2026, 11, 18, 4, tzinfo=UTC))


def _balance_warning(prop):
    account = factories.AccountFactory(unit__property=prop)
    factories.TopupFactory(account=account, amount=Decimal("60.00"))
    # Falls through the default 50.00 warning level.
    billing.charges_post(
        charges=[factories.ChargeInputFactory.build(account=account, net=Decimal("15.00"))]
    )
    return BalanceWarning.objects.get(account=account)


def _charge(prop):
    account = factories.AccountFactory(unit__property=prop)
    moment = timezone.now()
    [charge] = billing.charges_post(
        charges=[
            billing.ChargeInput(
                account=account,
                kind="energy",
                idempotency_key=f"matrix:{uuid.uuid4()}",
                period_start=moment - timedelta(hours=1),
                period_end=moment,
                quantity=Decimal(1),
                net=Decimal("1.00"),
                tax=Decimal(0),
            )
        ]
    )
    return charge


def _tariff(prop):
    return tariff_create(
        property=prop,
        utility="electricity",
        name="Flat",
        actor=None,
        version={"effective_from": timezone.now(), "kind": "flat", "flat_price": "1.00"},
    )


def _reading(prop):
    meter = factories.MeterFactory(unit__property=prop)
    return Reading.objects.create(
        meter=meter, taken_at=timezone.now(), register=Decimal(1), source="http"
    )


def _profile(prop):
    definition = json.loads((Path(meters.__file__).parent / "profiles" / "sdm120.json").read_text())
    return meter_profile_create(
        organisation=prop.organisation,
        actor=None,
        name=f"Copy {uuid.uuid4()}",
        definition=definition,
    )


def _gateway(prop):
    return gateway_create(property=prop, actor=None, name=f"GW {uuid.uuid4()}", host="10.0.0.1")


def _relay_command(prop):
    meter = factories.MeterFactory(unit__property=prop, has_relay=True)
    return relay_command_issue(meter=meter, close=False, actor=None, reason="matrix")


def _alarm(prop):
    meter = factories.MeterFactory(unit__property=prop)
    return alarm_raise(meter=meter, kind="offline", message="matrix")


def _payment(prop):
    from payments.services import intent_create, provider_config_save

    config = provider_config_save(
        organisation=prop.organisation,
        provider="sandbox",
        actor=None,
        secrets={"webhook_secret": "matrix"},
    )
    return intent_create(
        account=factories.AccountFactory(unit__property=prop),
        config=config,
        amount=Decimal("10.00"),
        actor=None,
        notify_url="http://127.0.0.1:9/",
        return_url="/",
    )


def _refund(prop):
    from payments.models import SandboxPayment
    from payments.providers.base import Notification
    from payments.services import notification_apply, refund_start

    intent = _payment(prop)
    SandboxPayment.objects.filter(reference=intent.reference).update(status="paid")
    notification_apply(
        config=intent.config,
        notification=Notification(
            event_id=f"evt_{intent.reference}",
            reference=intent.reference,
            status="succeeded",
            amount=intent.amount,
            currency=intent.currency,
        ),
        source="webhook",
    )
    intent.refresh_from_db()
    return refund_start(intent=intent, amount=Decimal("1.00"), reason="matrix", actor=None)


# How to make one object of each endpoint's model that belongs to a given property.
OBJECT_MAKERS = {
    "property": lambda prop: prop,
    "unit": lambda prop: factories.UnitFactory(property=prop),
    "tenant": lambda prop: factories.AccountFactory(unit__property=prop).tenant,
    "account": lambda prop: factories.AccountFactory(unit__property=prop),
    "meter": lambda prop: factories.MeterFactory(unit__property=prop),
    "audit-log": lambda prop: (factories.UnitFactory(property=prop), _audit_row(prop))[1],
    "ledger-transaction": lambda prop: _receipt(prop).transaction,
    "topup": _receipt,
    "charge": _charge,
    "cutoff-decision": _cutoff_decision,
    "balance-warning": _balance_warning,
    "tariff": _tariff,
    "reading": _reading,
    "meter-profile": _profile,
    "gateway": _gateway,
    "relay-command": _relay_command,
    "alarm": _alarm,
    "mqtt-device": lambda prop: factories.MqttDeviceFactory(property=prop),
    "notification": lambda prop: factories.NotificationFactory(account__unit__property=prop),
    # A tenant's channels are addressed by the tenant.
    "notification-preference": lambda prop: factories.AccountFactory(unit__property=prop).tenant,
    "daily-freeze": lambda prop: factories.DailyFreezeFactory(account__unit__property=prop),
    "meter-freeze": lambda prop: factories.MeterFreezeFactory(meter__unit__property=prop),
    "payment": _payment,
    "refund": _refund,
    "payment-provider": lambda prop: _payment(prop).config,
}
# Organisation-wide configuration: every staff member of the organisation sees it.
ORGANISATION_WIDE = {"meter-profile"}
# Organisation-wide settings only staff with every property see.
ORGANISATION_UNLIMITED = {"payment-provider"}
# Readings have no public id of their own; a list row names its meter. Channel preferences are
# a tenant's, and a row names the tenant. Frozen days name their account or meter.
ROW_IDENTITY = {
    "reading": ("meter", lambda reading: str(reading.meter.uuid)),
    "notification-preference": ("tenant", lambda tenant: str(tenant.uuid)),
    "daily-freeze": ("account", lambda row: str(row.account.uuid)),
    "meter-freeze": ("meter", lambda row: str(row.meter.uuid)),
}

# A body each write would accept if the object were in scope; the matrix only checks that an
# object outside the scope is never reached, so the body just has to be plausible.
WRITES = {
    ("partial_update", "patch"): {"name": "Renamed", "protected": True, "reason": "checking"},
    ("close", "post"): {"reason": "moving out"},
    ("install", "post"): {},
    ("remove", "post"): {"reason": "faulty"},
    ("reverse", "post"): {"reason": "x"},
    ("refund", "post"): {"amount": "1.00", "reason": "x"},
    ("connect", "post"): {"modbus_unit": 1},
    ("connect_mqtt", "post"): {"channel": 0},
    ("acknowledge", "post"): {"note": "seen"},
    ("resolve", "post"): {"note": "fixed"},
    ("rotate_credentials", "post"): {},
    ("balance_policy", "get"): {},
    ("pdf", "get"): {},
    ("html", "get"): {},
    ("balance_policy", "patch"): {"grace_minutes": 5},
    ("versions", "post"): {
        "effective_from": "2030-01-01T00:00:00Z",
        "kind": "flat",
        "flat_price": "2",
    },
}

ENDPOINTS = [basename for _, _, basename in router.registry]
PLACEHOLDER = uuid.UUID(int=0)


def test_every_endpoint_is_in_the_matrix():
    assert sorted(ENDPOINTS) == sorted(OBJECT_MAKERS)


def _has_detail(basename):
    viewset = next(vs for _, vs, name in router.registry if name == basename)
    return hasattr(viewset, "retrieve")


def _detail_writes(basename):
    viewset = next(vs for _, vs, name in router.registry if name == basename)
    writes = []
    if hasattr(viewset, "partial_update"):
        writes.append(
            ("partial_update", "patch", reverse(f"{basename}-detail", args=[PLACEHOLDER]))
        )
    for extra in viewset.get_extra_actions():
        if extra.detail:
            url_name = f"{basename}-{extra.url_name}"
            for method in extra.mapping:
                writes.append((extra.__name__, method, reverse(url_name, args=[PLACEHOLDER])))
    return writes


@pytest.fixture
def world(property_a1, property_a2, property_b1, owner_a, manager_a1, accountant_a, owner_b):
    return {
        "users": {
            "owner_a": owner_a,
            "manager_a1": manager_a1,
            "accountant_a": accountant_a,
            "owner_b": owner_b,
        },
        "properties": {"a1": property_a1, "a2": property_a2, "b1": property_b1},
    }


# Which properties each user may see.
VISIBLE = {
    "owner_a": {"a1", "a2"},
    "manager_a1": {"a1"},
    "accountant_a": {"a1", "a2"},
    "owner_b": {"b1"},
}


ORGANISATION_OF = {"owner_a": "a", "manager_a1": "a", "accountant_a": "a", "owner_b": "b"}


UNLIMITED = {"owner_a", "accountant_a", "owner_b"}


def _visible(basename, username, key):
    if basename in ORGANISATION_WIDE:
        return key.startswith(ORGANISATION_OF[username])
    if basename in ORGANISATION_UNLIMITED:
        return key.startswith(ORGANISATION_OF[username]) and username in UNLIMITED
    return key in VISIBLE[username]


@pytest.mark.parametrize("basename", ENDPOINTS)
def test_each_role_sees_exactly_its_properties_objects(basename, world, api):
    objects = {key: OBJECT_MAKERS[basename](prop) for key, prop in world["properties"].items()}
    for username, user in world["users"].items():
        api.force_authenticate(user)
        listed = api.get(reverse(f"{basename}-list"), {"page_size": 500})
        assert listed.status_code == 200, (username, listed.content)
        field, identity = ROW_IDENTITY.get(basename, ("id", lambda obj: str(obj.uuid)))
        listed_ids = {row[field] for row in listed.json()["results"]}
        for key, obj in objects.items():
            expected_visible = _visible(basename, username, key)
            assert (identity(obj) in listed_ids) is expected_visible, (username, key)
            if _has_detail(basename):
                detail = api.get(reverse(f"{basename}-detail", args=[obj.uuid]))
                assert detail.status_code == (200 if expected_visible else 404), (username, key)


@pytest.mark.parametrize("basename", ENDPOINTS)
def test_writes_to_objects_outside_the_scope_are_not_found(basename, world, api):
    writes = _detail_writes(basename)
    objects = {key: OBJECT_MAKERS[basename](prop) for key, prop in world["properties"].items()}
    for username, user in world["users"].items():
        api.force_authenticate(user)
        for key, obj in objects.items():
            if _visible(basename, username, key):
                continue
            for action, method, url in writes:
                body = WRITES[(action, method)]
                response = getattr(api, method)(url.replace(str(PLACEHOLDER), str(obj.uuid)), body)
                assert response.status_code == 404, (username, key, action, response.content)


def test_audit_log_has_no_writes():
    assert _detail_writes("audit-log") == []


def test_references_to_objects_outside_the_scope_are_rejected_as_unknown(world, api_as):
    api = api_as(world["users"]["manager_a1"])
    a2_unit = factories.UnitFactory(property=world["properties"]["a2"])
    b1_unit = factories.UnitFactory(property=world["properties"]["b1"])
    tenant = factories.TenantFactory(organisation=world["properties"]["a1"].organisation)
    for unit in (a2_unit, b1_unit):
        response = api.post(
            reverse("account-list"), {"tenant": str(tenant.uuid), "unit": str(unit.uuid)}
        )
        assert response.status_code == 400
        assert response.json()["unit"] == [f"No such object: {unit.uuid}."]
    response = api.post(
        reverse("unit-list"), {"property": str(world["properties"]["b1"].uuid), "name": "X"}
    )
    assert response.status_code == 400
    assert "property" in response.json()


def test_staff_of_another_organisation_cannot_move_in_their_tenants(world, api_as):
    foreign_tenant = factories.TenantFactory(organisation=world["properties"]["b1"].organisation)
    unit = factories.UnitFactory(property=world["properties"]["a1"])
    response = api_as(world["users"]["owner_a"]).post(
        reverse("account-list"), {"tenant": str(foreign_tenant.uuid), "unit": str(unit.uuid)}
    )
    assert response.status_code == 400
    assert "tenant" in response.json()


def test_limited_staff_see_tenants_not_yet_moved_in_but_not_other_properties_tenants(world, api):
    organisation = world["properties"]["a1"].organisation
    newcomer = factories.TenantFactory(organisation=organisation)
    elsewhere = factories.AccountFactory(unit__property=world["properties"]["a2"]).tenant
    api.force_authenticate(world["users"]["manager_a1"])
    listed = {row["id"] for row in api.get(reverse("tenant-list")).json()["results"]}
    assert str(newcomer.uuid) in listed
    assert str(elsewhere.uuid) not in listed


def test_a_login_without_staff_membership_is_forbidden_everywhere(world, api):
    outsider = factories.UserFactory(username="tenant-login")
    api.force_authenticate(outsider)
    for basename in ENDPOINTS:
        assert api.get(reverse(f"{basename}-list")).status_code == 403


def test_anonymous_requests_are_refused(api):
    for basename in ENDPOINTS:
        assert api.get(reverse(f"{basename}-list")).status_code == 401


class TestRoles:
    def test_accountants_read_but_cannot_write(self, world, api_as):
        api = api_as(world["users"]["accountant_a"])
        unit = factories.UnitFactory(property=world["properties"]["a1"])
        url = reverse("unit-detail", args=[unit.uuid])
        assert api.get(url).status_code == 200
        assert api.patch(url, {"name": "Nope"}).status_code == 403
        create = api.post(reverse("unit-list"), {"property": str(unit.property.uuid), "name": "N"})
        assert create.status_code == 403

    def test_managers_operate_units_but_not_property_settings(self, world, api_as):
        api = api_as(world["users"]["manager_a1"])
        prop = world["properties"]["a1"]
        assert (
            api.patch(reverse("property-detail", args=[prop.uuid]), {"name": "X"}).status_code
            == 403
        )
        created = api.post(reverse("unit-list"), {"property": str(prop.uuid), "name": "M-1"})
        assert created.status_code == 201

    def test_owners_change_property_settings_and_it_is_audited(self, world, api_as):
        api = api_as(world["users"]["owner_a"])
        prop = world["properties"]["a1"]
        response = api.patch(reverse("property-detail", args=[prop.uuid]), {"name": "Renamed"})
        assert response.status_code == 200
        assert response.json()["name"] == "Renamed"
        row = AuditLog.objects.get(action="property.update", object_id=str(prop.uuid))
        assert row.actor == world["users"]["owner_a"]
        assert (row.before, row.after) == ({"name": "A One"}, {"name": "Renamed"})

    def test_limited_staff_cannot_add_properties(self, world, api_as):
        api = api_as(world["users"]["manager_a1"])
        body = {
            "name": "New",
            "code": "NEW",
            "time_zone": "UTC",
            "currency": "CNY",
            "country": "CN",
        }
        assert api.post(reverse("property-list"), body).status_code == 403


def test_membership_properties_must_belong_to_the_organisation(org_a, property_b1):
    user = factories.UserFactory()
    with pytest.raises(ValidationError):
        services.membership_create(
            user=user, organisation=org_a, role="manager", actor=None, properties=[property_b1]
        )

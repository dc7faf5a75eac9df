"""Staff sign-in: passwords, TOTP codes, enrolment, an organisation's two-factor rule, idle
sessions and password resets."""

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token

from accounts import services as accounts
from accounts import two_factor
from prepaid.audit.models import AuditLog
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def staff_clean_cache():
    # Axes keeps its counts in the cache, its own Redis database in tests.
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


def _code(device: TOTPDevice) -> str:
    device.refresh_from_db()
    number = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return str(number).zfill(device.digits)


def _wrong(device: TOTPDevice) -> str:
    return str((int(_code(device)) + 1) % 10**6).zfill(6)


def _enrolled(user) -> TOTPDevice:
    device = two_factor.two_factor_enrol(user=user)
    assert two_factor.two_factor_confirm(user=user, token=_code(device)) is not None
    return device


def _password(client, username="owner-a", **extra):
    return client.post(reverse("login"), {"username": username, "password": PASSWORD, **extra})


def _signed_in_as(client):
    return client.session.get(SESSION_KEY)


def _next_step(clock):
    # A code is good once; the next one comes with the next 30-second step.
    clock.shift(timedelta(seconds=30))


# Passwords and codes ---------------------------------------------------------------------------


def test_staff_without_a_device_sign_in_with_their_password_alone(client, owner_a):
    response = _password(client)
    assert response.status_code == 302
    assert response["Location"] == reverse("home")
    assert client.get(reverse("home"))["Location"] == reverse("overview")


def test_staff_with_a_device_are_asked_for_a_code_before_being_signed_in(client, owner_a, clock):
    device = _enrolled(owner_a)
    _next_step(clock)
    response = _password(client, next="/api/docs/")
    assert response["Location"] == reverse("login-verify")
    assert _signed_in_as(client) is None
    assert client.get(reverse("home"))["Location"].startswith(reverse("login"))

    response = client.post(reverse("login-verify"), {"code": _code(device)})
    assert response.status_code == 302
    assert response["Location"] == "/api/docs/"
    assert _signed_in_as(client) == str(owner_a.pk)
    assert client.get(reverse("home"))["Location"] == reverse("overview")


def test_a_wrong_code_is_refused(client, owner_a, clock):
    device = _enrolled(owner_a)
    _next_step(clock)
    _password(client)
    response = client.post(reverse("login-verify"), {"code": _wrong(device)})
    assert response.status_code == 200
    assert b"That code is not right" in response.content
    assert _signed_in_as(client) is None
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    assert AuditLog.objects.filter(action="two_factor.verify", after={"verified": False}).exists()


def test_codes_are_paused_after_repeated_wrong_ones(client, owner_a, clock, settings):
    device = _enrolled(owner_a)
    _password(client)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        # Past django-otp's own doubling wait (1, 2, 4, 8 s), so each wrong code is checked.
        clock.shift(timedelta(seconds=20))
        assert client.post(reverse("login-verify"), {"code": _wrong(device)}).status_code == 200
    clock.shift(timedelta(seconds=20))
    response = client.post(reverse("login-verify"), {"code": _code(device)})
    assert response.status_code == 429
    assert b"Too many wrong codes" in response.content
    assert _signed_in_as(client) is None

    clock.shift(settings.AXES_COOLOFF_TIME)
    # The pending sign-in went stale meanwhile: the password is asked for again.
    assert client.post(reverse("login-verify"), {"code": _code(device)})["Location"] == reverse(
        "login"
    )
    _password(client)
    response = client.post(reverse("login-verify"), {"code": _code(device)})
    assert response.status_code == 302
    assert _signed_in_as(client) == str(owner_a.pk)


def test_a_password_sign_in_elsewhere_still_owes_the_code(client, owner_a, clock):
    _enrolled(owner_a)
    client.force_login(owner_a)
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login-verify"))


# Enrolment and removal -------------------------------------------------------------------------


def test_staff_enrol_with_a_qr_code_and_confirm_with_a_code(client, manager_a1, clock):
    client.force_login(manager_a1)
    page = client.get(reverse("two-factor"))
    assert b"Set up two-factor sign-in" in page.content

    client.post(reverse("two-factor"))
    device = TOTPDevice.objects.get(user=manager_a1)
    assert not device.confirmed
    page = client.get(reverse("two-factor")).content.decode()
    assert "<svg" in page
    assert 'autocomplete="one-time-code"' in page
    assert 'inputmode="numeric"' in page
    secret = re.search(r"<code>([A-Z2-7 ]+)</code>", page).group(1).replace(" ", "")
    assert f"secret={secret}" in device.config_url

    response = client.post(reverse("two-factor-confirm"), {"code": _wrong(device)})
    assert b"That code is not right" in response.content
    device.refresh_from_db()
    assert not device.confirmed

    clock.shift(timedelta(minutes=1))
    response = client.post(reverse("two-factor-confirm"), {"code": _code(device)})
    assert response["Location"] == reverse("two-factor")
    device.refresh_from_db()
    assert device.confirmed
    # The code proved the device, so this session carries on verified.
    assert client.get(reverse("home"))["Location"] == reverse("overview")
    assert AuditLog.objects.filter(action="two_factor.confirm", actor=manager_a1).exists()


def test_removing_the_device_needs_a_current_code(client, owner_a, clock):
    device = _enrolled(owner_a)
    _next_step(clock)
    _password(client)
    client.post(reverse("login-verify"), {"code": _code(device)})

    clock.shift(timedelta(minutes=1))
    response = client.post(reverse("two-factor-remove"), {"code": _wrong(device)})
    assert b"still on" in response.content
    assert TOTPDevice.objects.filter(user=owner_a).exists()

    clock.shift(timedelta(minutes=1))
    response = client.post(reverse("two-factor-remove"), {"code": _code(device)})
    assert response["Location"] == reverse("two-factor")
    assert not TOTPDevice.objects.filter(user=owner_a).exists()
    assert AuditLog.objects.filter(action="two_factor.remove", actor=owner_a).exists()
    assert client.get(reverse("home"))["Location"] == reverse("overview")


# An organisation that requires two-factor sign-in ---------------------------------------------


def test_owners_can_require_two_factor_and_others_cannot(client, owner_a, manager_a1, org_a):
    client.force_login(manager_a1)
    response = client.post(reverse("organisation-security"), {"require_two_factor": "on"})
    assert response.status_code == 403

    client.force_login(owner_a)
    client.post(reverse("organisation-security"), {"require_two_factor": "on"})
    org_a.refresh_from_db()
    assert org_a.require_two_factor
    entry = AuditLog.objects.get(action="organisation.two_factor_require")
    assert (entry.before, entry.after) == (
        {"require_two_factor": False},
        {"require_two_factor": True},
    )


@pytest.fixture
def org_a_requires(org_a, owner_a):
    two_factor.organisation_two_factor_require(organisation=org_a, actor=owner_a, required=True)
    return org_a


def test_required_two_factor_sends_staff_to_enrol_and_blocks_everything_else(
    client, manager_a1, org_a_requires, clock
):
    _password(client, "manager-a1")
    assert _signed_in_as(client) == str(manager_a1.pk)
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("two-factor"))
    response = client.get(reverse("property-list"))
    assert response.status_code == 403
    assert "Two-factor" in response.json()["detail"]
    response = client.get(reverse("home"), headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == reverse("two-factor")

    client.post(reverse("two-factor"))
    device = TOTPDevice.objects.get(user=manager_a1)
    client.post(reverse("two-factor-confirm"), {"code": _code(device)})
    assert client.get(reverse("home"))["Location"] == reverse("overview")
    assert client.get(reverse("property-list")).status_code == 200


def test_required_two_factor_leaves_api_tokens_alone(api, manager_a1, org_a_requires):
    token = Token.objects.create(user=manager_a1)
    response = api.get(reverse("property-list"), headers={"Authorization": f"Token {token.key}"})
    assert response.status_code == 200


def test_tenants_reach_the_portal_whatever_their_landlord_requires(
    client, property_a1, org_a_requires
):
    account = factories.AccountFactory(unit__property=property_a1, tenant__email="ten@example.test")
    accounts.tenant_link_login(
        tenant=account.tenant, user=factories.UserFactory(username="ten"), actor=None
    )
    response = client.post(
        reverse("portal:sign-in"), {"identifier": "ten@example.test", "password": PASSWORD}
    )
    assert response["Location"] == reverse("portal:index")
    assert client.get(reverse("portal:index")).status_code in {200, 302}
    response = client.get(reverse("portal:home", args=[account.uuid]))
    assert response.status_code == 200


# Idle sessions ---------------------------------------------------------------------------------


def test_an_idle_session_ends_after_the_idle_time_and_not_before(client, owner_a, clock, settings):
    _password(client)
    assert client.get(reverse("home"))["Location"] == reverse("overview")
    clock.shift(timedelta(minutes=settings.SESSION_IDLE_MINUTES - 1))
    assert client.get(reverse("home"))["Location"] == reverse("overview")
    clock.shift(timedelta(minutes=settings.SESSION_IDLE_MINUTES - 1))
    assert client.get(reverse("home"))["Location"] == reverse("overview")

    clock.shift(timedelta(minutes=settings.SESSION_IDLE_MINUTES, seconds=1))
    response = client.get(reverse("home"))
    assert response["Location"].startswith(reverse("login"))
    assert _signed_in_as(client) is None
    page = client.get(response["Location"])
    assert b"signed out after" in page.content


def test_an_idle_htmx_request_is_told_where_to_go(client, owner_a, clock, settings):
    _password(client)
    client.get(reverse("home"))
    clock.shift(timedelta(minutes=settings.SESSION_IDLE_MINUTES + 1))
    response = client.get(reverse("home"), headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == reverse("login")


def test_an_idle_tenant_is_sent_to_the_portal_sign_in(client, property_a1, clock, settings):
    account = factories.AccountFactory(unit__property=property_a1)
    user = factories.UserFactory(username="idle-tenant")
    accounts.tenant_link_login(tenant=account.tenant, user=user, actor=None)
    client.force_login(user)
    assert client.get(reverse("portal:home", args=[account.uuid])).status_code == 200
    clock.shift(timedelta(minutes=settings.SESSION_IDLE_MINUTES + 1))
    response = client.get(reverse("portal:home", args=[account.uuid]))
    assert response["Location"].startswith(reverse("portal:sign-in"))


# Password reset --------------------------------------------------------------------------------


def _reset_link(mailoutbox) -> str:
    [message] = mailoutbox
    return re.search(r"https?://[^/]+(/password-reset/\S+)", message.body).group(1)


def test_staff_reset_their_password_by_email(client, owner_a, mailoutbox):
    page = client.get(reverse("login"))
    assert reverse("password_reset").encode() in page.content

    response = client.post(reverse("password_reset"), {"email": "owner-a@example.test"})
    assert response["Location"] == reverse("password_reset_done")
    assert mailoutbox[0].to == ["owner-a@example.test"]
    link = _reset_link(mailoutbox)

    form = client.get(link, follow=True)
    assert form.context["validlink"]
    response = client.post(
        form.redirect_chain[-1][0],
        {
            "new_password1": "a brand new kettle of fish",
            "new_password2": "a brand new kettle of fish",
        },
    )
    assert response["Location"] == reverse("password_reset_complete")
    assert _signed_in_as(client) is None

    response = client.post(
        reverse("login"), {"username": "owner-a", "password": "a brand new kettle of fish"}
    )
    assert response["Location"] == reverse("home")


def test_a_reset_password_still_owes_the_code(client, owner_a, mailoutbox, clock):
    _enrolled(owner_a)
    client.post(reverse("password_reset"), {"email": "owner-a@example.test"})
    form = client.get(_reset_link(mailoutbox), follow=True)
    client.post(
        form.redirect_chain[-1][0],
        {
            "new_password1": "a brand new kettle of fish",
            "new_password2": "a brand new kettle of fish",
        },
    )
    response = client.post(
        reverse("login"), {"username": "owner-a", "password": "a brand new kettle of fish"}
    )
    assert response["Location"] == reverse("login-verify")
    assert _signed_in_as(client) is None


def test_tenants_get_no_staff_reset_email(client, property_a1, mailoutbox):
    account = factories.AccountFactory(unit__property=property_a1)
    user = factories.UserFactory(username="tenant-reset", email="tenant-reset@example.test")
    accounts.tenant_link_login(tenant=account.tenant, user=user, actor=None)
    response = client.post(reverse("password_reset"), {"email": "tenant-reset@example.test"})
    assert response["Location"] == reverse("password_reset_done")
    assert mailoutbox == []

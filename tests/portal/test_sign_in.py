"""Signing in to the tenant portal: passwords, one-time codes, resets and lockouts."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from accounts import services as accounts
from portal import signin
from portal.auth import phone_parse, phones_match
from portal.models import SignInCode
from portal.tasks import send_sign_in_code
from prepaid.audit.models import AuditLog
from prepaid.celery import app
from tests import factories
from tests.notifications.sms_backends import RecordingSmsBackend

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new kettle of fish"
WRONG_CREDENTIALS = "That email or phone number and password do not match."


@pytest.fixture(autouse=True)
def signin_clean_cache():
    # Throttles and decoy codes live in the cache (its own Redis database in tests).
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def signin_run_tasks():
    # Codes are sent by a Celery task after commit; here the worker's side runs in-process.
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def signin_sms(settings):
    settings.SMS_BACKEND = "tests.notifications.sms_backends.RecordingSmsBackend"
    RecordingSmsBackend.sent = []
    return RecordingSmsBackend.sent


@pytest.fixture
def signin_tenant(property_a1):
    """A tenant with a portal login, an email address and a phone number, in English."""
    account = factories.AccountFactory(
        unit__property=property_a1,
        tenant__name="Ada Lovelace",
        tenant__email="ada@example.test",
        tenant__phone="+86 138 0013 8000",
    )
    user = factories.UserFactory(username="ada")
    accounts.tenant_link_login(tenant=account.tenant, user=user, actor=None)
    return account.tenant


def _sign_in(client, identifier, password=PASSWORD, **extra):
    return client.post(
        reverse("portal:sign-in"), {"identifier": identifier, "password": password, **extra}
    )


def _signed_in_as(client):
    return client.session.get(SESSION_KEY)


def _code_in(text: str) -> str:
    return re.search(r"\b(\d{6})\b", text).group(1)


def _ask_for_code(client, identifier, *, view="portal:code-request", **extra):
    return client.post(reverse(view), {"identifier": identifier, **extra})


# Passwords -------------------------------------------------------------------------------------


def test_a_tenant_signs_in_with_their_email_in_any_case(client, signin_tenant):
    response = _sign_in(client, "ADA@Example.TEST")
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:index")
    assert _signed_in_as(client) == str(signin_tenant.user_id)


@pytest.mark.parametrize(
    "spelling",
    [
        "+86 138 0013 8000",
        "+8613800138000",
        "008613800138000",
        "0086 138-0013-8000",
        "+86 (138) 0013-8000",
        "8613800138000",
        "138 0013 8000",
        "(138) 0013-8000",
        " 13800138000 ",
    ],
)
def test_a_tenant_signs_in_with_their_phone_however_it_is_written(client, signin_tenant, spelling):
    response = _sign_in(client, spelling)
    assert response.status_code == 302
    assert _signed_in_as(client) == str(signin_tenant.user_id)


@pytest.mark.parametrize(
    "other_number",
    ["+1 138 0013 8000", "+86 139 0013 8000", "+86 138 0013 800", "8000", "+86 138 0013 80001"],
)
def test_a_different_phone_number_does_not_sign_in(client, signin_tenant, other_number):
    response = _sign_in(client, other_number)
    assert response.status_code == 200
    assert _signed_in_as(client) is None


def test_phone_numbers_match_across_national_and_international_spellings():
    uk_mobile = phone_parse("+44 7700 900123")
    assert phones_match(uk_mobile, phone_parse("07700 900123"))
    assert phones_match(uk_mobile, phone_parse("0044 7700-900123"))
    assert not phones_match(uk_mobile, phone_parse("+33 7700 900123"))
    assert not phones_match(uk_mobile, phone_parse("7700 900124"))
    # Only a country code's worth of digits may be missing in front.
    assert not phones_match(phone_parse("+86 138 0013 8000"), phone_parse("800 138 000"))
    assert phone_parse("12 34") is None
    assert phone_parse("call me") is None


def test_a_wrong_password_is_refused_with_the_same_words_as_an_unknown_identifier(
    client, signin_tenant
):
    wrong = _sign_in(client, "ada@example.test", "not the password")
    unknown = _sign_in(client, "nobody@example.test")
    assert wrong.status_code == unknown.status_code == 200
    assert WRONG_CREDENTIALS in wrong.text
    assert WRONG_CREDENTIALS in unknown.text
    assert _signed_in_as(client) is None


def test_an_inactive_login_cannot_sign_in(client, signin_tenant):
    signin_tenant.user.is_active = False
    signin_tenant.user.save()
    response = _sign_in(client, "ada@example.test")
    assert WRONG_CREDENTIALS in response.text
    assert _signed_in_as(client) is None


def test_a_staff_login_is_refused_and_pointed_to_the_staff_sign_in(client, owner_a):
    response = _sign_in(client, "owner-a")
    assert response.status_code == 200
    assert "This is a staff login" in response.text
    assert f'href="{reverse("login")}"' in response.text
    assert _signed_in_as(client) is None


def test_a_safe_next_is_followed_and_an_unsafe_one_ignored(client, signin_tenant):
    settings_page = reverse("portal:settings")
    assert _sign_in(client, "ada@example.test", next=settings_page)["Location"] == settings_page
    client.logout()
    for unsafe in ["https://evil.example/portal/", "//evil.example/", "javascript:alert(1)"]:
        response = _sign_in(client, "ada@example.test", next=unsafe)
        assert response["Location"] == reverse("portal:index")
        client.logout()


def test_the_sign_in_page_has_the_fields_a_password_manager_needs(client, db):
    page = client.get(reverse("portal:sign-in")).text
    assert 'name="identifier"' in page
    assert 'autocomplete="username"' in page
    assert 'name="password"' in page
    assert 'autocomplete="current-password"' in page
    assert 'data-testid="sign-in"' in page
    assert '<label for="id_identifier">' in page
    assert 'id="id_identifier"' in page


# Lockout ---------------------------------------------------------------------------------------


def test_repeated_failures_lock_the_identifier_out_even_with_the_right_password(
    client, signin_tenant, settings
):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, "ada@example.test", "guess").status_code == 200
    locked = _sign_in(client, "ada@example.test", "guess")
    assert locked.status_code == 429
    assert "portal/locked_out.html" in [template.name for template in locked.templates]
    assert "Try again in 15 minutes" in locked.text

    assert _sign_in(client, "ada@example.test").status_code == 429
    assert _signed_in_as(client) is None


def test_the_lockout_is_per_identifier_and_address(client, signin_tenant, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "ada@example.test", "guess")
    elsewhere = Client(REMOTE_ADDR="203.0.113.7")
    assert _sign_in(elsewhere, "ada@example.test").status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, signin_tenant, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, "ada@example.test", "guess")
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert _sign_in(client, "ada@example.test").status_code == 302


def test_signing_in_forgets_the_failures_before_it(client, signin_tenant, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, "ada@example.test", "guess")
    assert _sign_in(client, "ada@example.test").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, "ada@example.test", "guess").status_code == 200


def test_the_staff_sign_in_is_locked_out_with_the_same_page(client, owner_a, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(reverse("login"), {"username": "owner-a", "password": "guess"})
    assert response.status_code == 429
    assert f'href="{reverse("login")}"' in response.text
    assert (
        client.post(reverse("login"), {"username": "owner-a", "password": PASSWORD}).status_code
        == 429
    )


# One-time codes --------------------------------------------------------------------------------


def test_a_tenant_signs_in_with_a_code_from_their_email(
    client, signin_tenant, mailoutbox, signin_run_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask_for_code(client, "ada@example.test")
    code = SignInCode.objects.get()
    assert response["Location"] == reverse("portal:code-verify", args=[code.uuid])
    assert [message.to for message in mailoutbox] == [["ada@example.test"]]
    typed = _code_in(mailoutbox[0].body)

    response = client.post(response["Location"], {"code": typed})

    assert response["Location"] == reverse("portal:index")
    assert _signed_in_as(client) == str(signin_tenant.user_id)
    code.refresh_from_db()
    assert code.sent_at is not None
    assert code.used_at is not None


def test_a_code_goes_by_sms_when_the_tenant_asks_for_it(
    client, signin_tenant, signin_sms, signin_run_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask_for_code(client, "13800138000", channel="sms")
    [(to, body)] = signin_sms
    assert to == "+8613800138000"
    client.post(response["Location"], {"code": _code_in(body)})
    assert _signed_in_as(client) == str(signin_tenant.user_id)


def test_a_code_goes_by_sms_to_a_tenant_without_email(
    signin_tenant, signin_sms, signin_run_tasks, django_capture_on_commit_callbacks
):
    accounts.tenant_update(tenant=signin_tenant, actor=None, email="")
    with django_capture_on_commit_callbacks(execute=True):
        signin.sign_in_code_issue(
            identifier="+86 138 0013 8000", purpose=SignInCode.Purpose.SIGN_IN, channel="email"
        )
    assert [to for to, _ in signin_sms] == ["+8613800138000"]


def test_the_code_is_not_stored_but_derived_from_the_secret_key(signin_tenant, settings):
    code_uuid = signin.sign_in_code_issue(
        identifier="ada@example.test", purpose=SignInCode.Purpose.SIGN_IN
    )
    code = SignInCode.objects.get(uuid=code_uuid)
    digits = code.code
    stored = [str(getattr(code, field.attname)) for field in SignInCode._meta.concrete_fields]
    assert digits not in stored
    settings.SECRET_KEY = "another-secret-key-entirely"
    assert code.code != digits


def _issued(identifier="ada@example.test", purpose=SignInCode.Purpose.SIGN_IN):
    code_uuid = signin.sign_in_code_issue(identifier=identifier, purpose=purpose)
    return SignInCode.objects.get(uuid=code_uuid)


def _type_code(client, code, typed):
    return client.post(reverse("portal:code-verify", args=[code.uuid]), {"code": typed})


def test_an_expired_code_is_refused(client, signin_tenant):
    code = _issued()
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        response = _type_code(client, code, code.code)
    assert "This code has expired" in response.text
    assert _signed_in_as(client) is None


def _wrong(code: SignInCode) -> str:
    return "000000" if code.code != "000000" else "111111"


def test_five_wrong_codes_lock_the_code_out_and_ask_for_a_new_one(client, signin_tenant):
    code = _issued()
    for _ in range(4):
        assert "That code is not right" in _type_code(client, code, _wrong(code)).text
    locked = _type_code(client, code, _wrong(code))
    assert locked.status_code == 429
    assert "typed wrongly too many times" in locked.text
    assert f'href="{reverse("portal:code-request")}"' in locked.text

    assert _type_code(client, code, code.code).status_code == 429
    assert _signed_in_as(client) is None


def test_a_code_stops_working_after_five_wrong_tries_whatever_the_lockout_limit(
    client, signin_tenant, settings
):
    settings.AXES_FAILURE_LIMIT = 20
    code = _issued()
    for _ in range(4):
        _type_code(client, code, _wrong(code))
    assert "typed wrongly too many times" in _type_code(client, code, _wrong(code)).text
    assert "typed wrongly too many times" in _type_code(client, code, code.code).text
    assert _signed_in_as(client) is None
    code.refresh_from_db()
    assert code.attempts == 5
    assert code.used_at is None


def test_a_code_works_once(client, signin_tenant):
    code = _issued()
    _type_code(client, code, code.code)
    assert _signed_in_as(client) == str(signin_tenant.user_id)
    other = Client()
    response = _type_code(other, code, code.code)
    assert "already been used" in response.text
    assert _signed_in_as(other) is None


def test_a_sign_in_code_cannot_reset_a_password(client, signin_tenant):
    code = _issued()
    response = client.post(
        reverse("portal:reset-confirm", args=[code.uuid]),
        {"code": code.code, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert "This code has expired" in response.text
    signin_tenant.user.refresh_from_db()
    assert signin_tenant.user.check_password(PASSWORD)


def test_codes_are_throttled_to_one_a_minute_and_five_an_hour(client, signin_tenant):
    start = timezone.now()
    assert _ask_for_code(client, "ada@example.test").status_code == 302
    too_soon = _ask_for_code(client, "ada@example.test")
    assert too_soon.status_code == 200
    assert "Wait a minute before asking again" in too_soon.text
    for minutes in range(2, 10, 2):
        with time_machine.travel(start + timedelta(minutes=minutes)):
            assert _ask_for_code(client, "ada@example.test").status_code == 302
    with time_machine.travel(start + timedelta(minutes=12)):
        too_many = _ask_for_code(client, "ada@example.test")
    assert "Too many codes" in too_many.text
    assert SignInCode.objects.count() == 5


def test_the_throttle_counts_the_login_whatever_identifier_is_used(client, signin_tenant):
    assert _ask_for_code(client, "ada@example.test").status_code == 302
    assert "Wait a minute" in _ask_for_code(client, "+86 138 0013 8000").text


def test_a_reset_code_counts_towards_the_same_throttle(client, signin_tenant):
    _ask_for_code(client, "ada@example.test")
    response = _ask_for_code(client, "+8613800138000", view="portal:reset-request")
    assert "Wait a minute" in response.text


def test_the_code_is_written_in_the_tenants_language(
    signin_tenant, mailoutbox, monkeypatch, signin_run_tasks, django_capture_on_commit_callbacks
):
    accounts.tenant_update(tenant=signin_tenant, actor=None, preferred_language="zh-hans")
    rendered_in = []
    real_override = translation.override

    def override(language, *args, **kwargs):
        rendered_in.append(language)
        return real_override(language, *args, **kwargs)

    monkeypatch.setattr(signin.translation, "override", override)
    with django_capture_on_commit_callbacks(execute=True):
        code = _issued()
    assert code.language == "zh-hans"
    assert rendered_in == ["zh-hans"]
    assert code.code in mailoutbox[0].body


def test_sending_a_code_twice_delivers_it_once(
    signin_tenant, mailoutbox, django_capture_on_commit_callbacks
):
    code = _issued()
    assert send_sign_in_code.apply(args=[code.pk]).get() == "sent"
    assert send_sign_in_code.apply(args=[code.pk]).get() == "skipped"
    assert len(mailoutbox) == 1


def test_a_used_or_expired_code_is_not_sent(signin_tenant, mailoutbox):
    used = _issued()
    used.used_at = timezone.now()
    used.save()
    assert signin.sign_in_code_send(code_id=used.pk) == "skipped"
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        stale = _issued()
    with time_machine.travel(timezone.now() + timedelta(minutes=13)):
        assert signin.sign_in_code_send(code_id=stale.pk) == "skipped"
    assert mailoutbox == []


def test_a_failed_delivery_is_recorded_on_the_code(signin_tenant, settings):
    settings.SMS_BACKEND = "tests.notifications.sms_backends.FailingSmsBackend"
    code = signin.sign_in_code_issue(
        identifier="ada@example.test", purpose=SignInCode.Purpose.SIGN_IN, channel="sms"
    )
    row = SignInCode.objects.get(uuid=code)
    with pytest.raises(signin.DeliveryError):
        signin.sign_in_code_send(code_id=row.pk)
    row.refresh_from_db()
    assert row.sent_at is None
    assert "provider unavailable" in row.last_error


def test_the_send_task_goes_to_the_notify_queue(settings):
    assert settings.CELERY_TASK_ROUTES[send_sign_in_code.name] == {"queue": "notify"}


# Not telling who has an account ------------------------------------------------------------------


def test_asking_for_a_code_for_an_unknown_identifier_looks_the_same(
    client, signin_tenant, mailoutbox, signin_run_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        known = _ask_for_code(client, "ada@example.test")
        unknown = _ask_for_code(client, "nobody@example.test")
    assert known.status_code == unknown.status_code == 302
    assert re.fullmatch(r"/portal/sign-in/code/[0-9a-f-]{36}/", unknown["Location"])
    assert SignInCode.objects.count() == 1
    assert len(mailoutbox) == 1

    page = client.get(unknown["Location"])
    assert "If that email or phone number is yours, we have sent a code to it" in page.text
    for _ in range(4):
        assert "That code is not right" in client.post(unknown["Location"], {"code": "123456"}).text
    locked = client.post(unknown["Location"], {"code": "123456"})
    assert locked.status_code == 429
    assert "typed wrongly too many times" in locked.text
    assert _signed_in_as(client) is None


def test_a_decoy_code_runs_out_of_tries_like_a_real_one(client, db, settings):
    settings.AXES_FAILURE_LIMIT = 20
    decoy = _ask_for_code(client, "nobody@example.test")["Location"]
    for _ in range(5):
        client.post(decoy, {"code": "123456"})
    assert "typed wrongly too many times" in client.post(decoy, {"code": "123456"}).text
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert "This code has expired" in client.post(decoy, {"code": "123456"}).text


def test_an_unknown_identifier_is_throttled_like_a_known_one(client, db):
    assert _ask_for_code(client, "nobody@example.test").status_code == 302
    assert "Wait a minute" in _ask_for_code(client, "NOBODY@example.test").text


def test_a_staff_login_cannot_ask_for_a_code(client, owner_a, mailoutbox):
    response = _ask_for_code(client, "owner-a@example.test")
    assert response.status_code == 302
    assert SignInCode.objects.count() == 0


def test_an_address_two_logins_share_gets_no_code_but_each_password_works(
    client, signin_tenant, org_b
):
    other = factories.TenantFactory(organisation=org_b, email="ADA@example.test")
    accounts.tenant_link_login(
        tenant=other,
        user=factories.UserFactory(username="ada-at-b", password="other pw"),
        actor=None,
    )
    assert _ask_for_code(client, "ada@example.test").status_code == 302
    assert SignInCode.objects.count() == 0
    _sign_in(client, "ada@example.test", "other pw")
    assert _signed_in_as(client) == str(other.user_id)


def test_a_made_up_code_page_reads_as_expired(client, db):
    response = client.post(
        reverse("portal:code-verify", args=["6f1c1f44-3d0a-4a8e-9a59-0c5b8f0f2f11"]),
        {"code": "123456"},
    )
    assert "This code has expired" in response.text


# Resetting a password ----------------------------------------------------------------------------


def test_a_tenant_resets_their_password_with_a_code(
    client, signin_tenant, mailoutbox, signin_run_tasks, django_capture_on_commit_callbacks
):
    elsewhere = Client()
    elsewhere.force_login(signin_tenant.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = _ask_for_code(client, "+86 138 0013 8000", view="portal:reset-request")
    code = SignInCode.objects.get()
    assert code.purpose == SignInCode.Purpose.RESET
    assert response["Location"] == reverse("portal:reset-confirm", args=[code.uuid])
    assert "password reset" in mailoutbox[0].subject

    response = client.post(
        response["Location"],
        {
            "code": _code_in(mailoutbox[0].body),
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )

    assert response["Location"] == reverse("portal:index")
    assert _signed_in_as(client) == str(signin_tenant.user_id)
    signin_tenant.user.refresh_from_db()
    assert signin_tenant.user.check_password(NEW_PASSWORD)
    audit = AuditLog.objects.get(action="tenant.password_reset")
    assert audit.organisation_id == signin_tenant.organisation_id
    assert audit.actor == signin_tenant.user
    # The new password's session hash ends every other session.
    assert elsewhere.get(reverse("portal:index"))["Location"].startswith(reverse("portal:sign-in"))


def test_a_weak_new_password_is_refused_without_using_up_the_code(client, signin_tenant):
    code = _issued(purpose=SignInCode.Purpose.RESET)
    url = reverse("portal:reset-confirm", args=[code.uuid])
    weak = client.post(url, {"code": code.code, "new_password1": "123", "new_password2": "123"})
    assert "This password is too short" in weak.text
    code.refresh_from_db()
    assert code.used_at is None
    assert code.attempts == 0
    mismatch = {"code": code.code, "new_password1": NEW_PASSWORD, "new_password2": "other"}
    assert "The two passwords differ" in client.post(url, mismatch).text
    assert _signed_in_as(client) is None


def test_a_wrong_reset_code_leaves_the_password_alone(client, signin_tenant):
    code = _issued(purpose=SignInCode.Purpose.RESET)
    response = client.post(
        reverse("portal:reset-confirm", args=[code.uuid]),
        {"code": _wrong(code), "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert "That code is not right" in response.text
    signin_tenant.user.refresh_from_db()
    assert signin_tenant.user.check_password(PASSWORD)
    assert not AuditLog.objects.filter(action="tenant.password_reset").exists()


# Signing out -------------------------------------------------------------------------------------


def test_signing_out_takes_a_post(client, signin_tenant):
    client.force_login(signin_tenant.user)
    assert client.get(reverse("portal:sign-out")).status_code == 405
    assert _signed_in_as(client) == str(signin_tenant.user_id)
    response = client.post(reverse("portal:sign-out"))
    assert response["Location"] == reverse("portal:sign-in")
    assert _signed_in_as(client) is None

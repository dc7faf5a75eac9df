"""Every dashboard URL, generated from the URL configuration, against every kind of caller.

- Staff of another organisation, and a manager not assigned to the object's property, get 404
  on pages and partials (an htmx request is the same view, so it is checked too) and on POSTs.
- A role without the capability gets 403 on objects it can see; a role with it is not refused.
- Anonymous callers are sent to sign in; a tenant's login is refused.

A URL outside the API, the portal, the admin and the sign-in pages must be a `staff_view` and
have a `StaffUrl` entry in some `tests/<package>/staff_urls.py`, or the first test fails.
"""

import importlib
import pkgutil

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

import tests
from prepaid.scoping import ROLE_CAPABILITIES, Role
from tests import factories
from tests.staff_matrix import StaffUrl

pytestmark = pytest.mark.django_db

# Not dashboard pages: each has its own access rules and tests.
NOT_DASHBOARD = (
    "admin/",  # superusers only, Django's own checks
    "api/",  # tests/api/test_scoping.py
    "portal/",  # tenants, tests/portal
    "payments/",  # provider webhooks and the sandbox's hosted page
    "i18n/",  # the language switch, open to everyone
    "login/",
    "logout/",
    "password-reset/",
    "account/",  # a staff member's own two-factor settings, tests/accounts
)


def _walk(patterns, prefix="", namespace=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), f"{namespace}{entry.name}", entry.callback


def dashboard_urls():
    return {
        name: callback
        for route, name, callback in _walk(get_resolver().url_patterns)
        # The root only sends each sign-in where it belongs (tests/prepaid/test_views.py).
        if route and not route.startswith(NOT_DASHBOARD)
    }


def _matrix() -> dict[str, StaffUrl]:
    """Every `STAFF_URLS` of every `tests/<package>/staff_urls*.py` module."""
    entries: dict[str, StaffUrl] = {}
    for package in pkgutil.iter_modules(tests.__path__):
        if not package.ispkg:
            continue
        subpackage = importlib.import_module(f"tests.{package.name}")
        for module_info in pkgutil.iter_modules(subpackage.__path__):
            if not module_info.name.startswith("staff_urls"):
                continue
            module = importlib.import_module(f"tests.{package.name}.{module_info.name}")
            clashes = entries.keys() & module.STAFF_URLS.keys()
            assert not clashes, f"listed twice: {clashes}"
            entries.update(module.STAFF_URLS)
    return entries


MATRIX = _matrix()
NAMES = sorted(MATRIX)
# URLs that address an object; the others (lists, the overview, search) are checked for what
# they list by their own page tests.
OBJECT_NAMES = [name for name in NAMES if MATRIX[name].kwargs is not None]


def test_every_dashboard_url_is_a_staff_view_in_the_matrix():
    urls = dashboard_urls()
    unwrapped = sorted(name for name, view in urls.items() if not _is_staff_view(view))
    assert unwrapped == [], "dashboard views without staff_view"
    assert sorted(urls) == NAMES


def _is_staff_view(view) -> bool:
    return hasattr(view, "staff_read_capability")


ROLE_OF = {"owner_a": Role.OWNER, "manager_a1": Role.MANAGER, "accountant_a": Role.ACCOUNTANT}


@pytest.fixture
def users(owner_a, manager_a1, accountant_a, owner_b):
    return {"owner_a": owner_a, "manager_a1": manager_a1, "accountant_a": accountant_a,
            "owner_b": owner_b}  # fmt: skip


def _requests(client, name, entry, kwargs):
    """Each way the URL can be asked for: the page, its htmx partial and the POST."""
    url = reverse(name, kwargs=kwargs)
    if entry.get:
        yield "GET", client.get(url, entry.query)
        yield "htmx GET", client.get(url, entry.query, HTTP_HX_REQUEST="true")
    if entry.post is not None:
        yield "POST", client.post(url, entry.post_data(kwargs))


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_objects_outside_the_callers_scope_are_not_found(name, users, property_a2, client):
    entry = MATRIX[name]
    kwargs = entry.kwargs(property_a2)
    for username in ("owner_b", "manager_a1"):
        client.force_login(users[username])
        for how, response in _requests(client, name, entry, kwargs):
            assert response.status_code == 404, (username, how, response.status_code)


@pytest.mark.parametrize("name", NAMES)
def test_each_role_gets_exactly_what_its_capabilities_allow(name, users, property_a1, client):
    entry = MATRIX[name]
    kwargs = entry.kwargs(property_a1) if entry.kwargs else {}
    for username, role in ROLE_OF.items():
        client.force_login(users[username])
        capabilities = ROLE_CAPABILITIES[role]
        for how, response in _requests(client, name, entry, kwargs):
            needed = {entry.read, entry.post} if how == "POST" else {entry.read}
            if not needed <= capabilities:
                assert response.status_code == 403, (username, how, response.status_code)
            else:
                assert response.status_code not in (403, 404), (username, how)
                assert response.status_code < 500, (username, how)


@pytest.mark.parametrize("name", NAMES)
def test_anonymous_callers_are_sent_to_sign_in(name, property_a1, client):
    entry = MATRIX[name]
    kwargs = entry.kwargs(property_a1) if entry.kwargs else {}
    for how, response in _requests(client, name, entry, kwargs):
        assert response.status_code == 302, how
        assert response["Location"].startswith(reverse("login")), how


@pytest.mark.parametrize("name", NAMES)
def test_a_tenants_login_is_refused(name, property_a1, client):
    entry = MATRIX[name]
    kwargs = entry.kwargs(property_a1) if entry.kwargs else {}
    account = factories.AccountFactory(unit__property=property_a1)
    login = factories.UserFactory(username="tenant-login")
    account.tenant.user = login
    account.tenant.save(update_fields=["user"])
    client.force_login(login)
    for how, response in _requests(client, name, entry, kwargs):
        assert response.status_code == 403, how

import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts import services
from meters.services import builtin_profiles_sync
from prepaid.scoping import Role
from tests import factories


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    """The suite runs against the real PostgreSQL, Redis and Mosquitto, or not at all."""
    problems = []
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        problems.append("DATABASE_URL must point at PostgreSQL (run the suite with `make test`).")
    elif not _reachable(settings.DATABASE_URL, 5432):
        problems.append(f"PostgreSQL is unreachable at {settings.DATABASE_URL}.")
    for name, url, port in [
        ("Redis (REDIS_URL)", settings.REDIS_URL, 6379),
        ("the Celery broker (CELERY_BROKER_URL)", settings.CELERY_BROKER_URL, 6379),
        ("Mosquitto (MQTT_URL)", settings.MQTT_URL, 1883),
    ]:
        if not url.startswith(("redis", "mqtt")):
            problems.append(f"{name} must be the real service, not {url!r}.")
        elif not _reachable(url, port):
            problems.append(f"{name} is unreachable at {url}.")
    if problems:
        pytest.exit("Real services missing:\n  " + "\n  ".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Real hashers take a quarter of a second per user by design; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def org_a(db):
    return factories.OrganisationFactory(name="Org A", slug="org-a")


@pytest.fixture
def org_b(db):
    return factories.OrganisationFactory(name="Org B", slug="org-b")


@pytest.fixture
def property_a1(org_a):
    return factories.PropertyFactory(organisation=org_a, name="A One", code="A1")


@pytest.fixture
def property_a2(org_a):
    return factories.PropertyFactory(organisation=org_a, name="A Two", code="A2")


@pytest.fixture
def account(property_a1):
    """An open account with an empty wallet in property A1."""
    return factories.AccountFactory(unit__property=property_a1)


@pytest.fixture
def property_b1(org_b):
    return factories.PropertyFactory(organisation=org_b, name="B One", code="B1")


def _staff(username, organisation, role, properties=()):
    user = factories.UserFactory(username=username)
    services.membership_create(
        user=user, organisation=organisation, role=role, actor=None, properties=properties
    )
    return user


@pytest.fixture
def owner_a(org_a, property_a1, property_a2):
    return _staff("owner-a", org_a, Role.OWNER)


@pytest.fixture
def manager_a1(org_a, property_a1, property_a2):
    return _staff("manager-a1", org_a, Role.MANAGER, [property_a1])


@pytest.fixture
def accountant_a(org_a, property_a1, property_a2):
    return _staff("accountant-a", org_a, Role.ACCOUNTANT)


@pytest.fixture
def owner_b(org_b, property_b1):
    return _staff("owner-b", org_b, Role.OWNER)


@pytest.fixture
def builtin_profiles(db):
    """The shipped meter profiles. A migration loads them, but transactional tests empty every
    table, so tests that need them ask for them."""
    builtin_profiles_sync()


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def api_as(api):
    def login(user):
        api.force_authenticate(user)
        return api

    return login

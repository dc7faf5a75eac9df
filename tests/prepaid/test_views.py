import pytest
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_staff_are_sent_to_the_overview(client, manager_a1):
    client.force_login(manager_a1)
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("overview")


def test_a_tenant_login_is_sent_to_the_portal(client, property_a1):
    mine = factories.AccountFactory(unit__property=property_a1)
    user = factories.UserFactory()
    mine.tenant.user = user
    mine.tenant.save()
    client.force_login(user)
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:index")


def test_a_login_with_no_organisation_or_tenancy_is_told_so(client, db):
    client.force_login(factories.UserFactory())
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert b"not linked" in response.content


def test_the_sign_in_page_signs_in(client, owner_a):
    response = client.post(
        reverse("login"), {"username": "owner-a", "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert client.get(reverse("home"), follow=True).redirect_chain == [(reverse("overview"), 302)]
    assert client.get(reverse("overview")).status_code == 200

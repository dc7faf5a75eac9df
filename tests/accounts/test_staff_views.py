"""Staff management for owners: the member list, invitations, roles, properties and removal."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.models import Membership
from prepaid.audit.models import AuditLog
from prepaid.scoping import Role
from tests import factories

pytestmark = pytest.mark.django_db

User = get_user_model()


def _member(organisation, role=Role.MANAGER, properties=(), **user):
    return services.membership_create(
        user=factories.UserFactory(**user),
        organisation=organisation,
        role=role,
        actor=None,
        properties=properties,
    )


def _member_url(name, member):
    return reverse(name, kwargs={"member_id": member.uuid})


# The list ----------------------------------------------------------------------------------------


def test_the_list_shows_each_members_role_properties_and_sign_in_state(
    client, owner_a, property_a1, org_a
):
    limited = _member(org_a, Role.MANAGER, [property_a1], username="limited")
    TOTPDevice.objects.create(user=limited.user, name="app", confirmed=True)
    invited = services.staff_invite(
        organisation=org_a,
        email="new@example.test",
        role=Role.ACCOUNTANT,
        actor=owner_a,
        base_url="http://testserver/",
        language="en",
    )
    client.force_login(owner_a)
    response = client.get(reverse("accounts:staff"))
    assert response.status_code == 200
    rows = {member.user.username: member for member in response.context["members"]}
    assert set(rows) == {"owner-a", "limited", "new@example.test"}
    assert rows["limited"].two_factor is True
    assert rows["owner-a"].two_factor is False
    page = response.content.decode()
    assert "A One" in page  # the limited manager's property
    assert "All properties" in page
    assert "Invited, no password yet" in page
    assert _member_url("accounts:staff-member", invited) in page


def test_the_list_takes_the_same_queries_for_3_members_as_for_30(
    client, owner_a, org_a, property_a1, django_assert_max_num_queries
):
    client.force_login(owner_a)
    for _ in range(2):
        _member(org_a, Role.MANAGER, [property_a1])
    with django_assert_max_num_queries(12):
        assert client.get(reverse("accounts:staff")).status_code == 200
    for _ in range(27):
        _member(org_a, Role.ACCOUNTANT, [property_a1])
    with django_assert_max_num_queries(12):
        response = client.get(reverse("accounts:staff"))
    assert len(response.context["members"]) == 30


def test_managers_and_accountants_are_refused(client, manager_a1, accountant_a):
    for user in (manager_a1, accountant_a):
        client.force_login(user)
        assert client.get(reverse("accounts:staff")).status_code == 403


def test_another_organisations_members_are_not_found(client, owner_a, org_b):
    foreign = _member(org_b)
    client.force_login(owner_a)
    assert client.get(_member_url("accounts:staff-member", foreign)).status_code == 404
    response = client.post(_member_url("accounts:staff-role", foreign), {"role": Role.OWNER})
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.role == Role.MANAGER


# Invitations -------------------------------------------------------------------------------------


def test_an_invitation_creates_a_member_who_sets_a_password_from_the_email(
    client, owner_a, property_a1, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("accounts:staff-invite"),
            {
                "email": "Chen.Jing@Example.test",
                "name": "Chen Jing",
                "role": Role.MANAGER,
                "properties": [str(property_a1.uuid)],
            },
        )
    assert response.status_code == 302
    member = Membership.objects.select_related("user").get(user__username="chen.jing@example.test")
    assert (member.role, list(member.properties.all())) == (Role.MANAGER, [property_a1])
    assert not member.user.has_usable_password()
    audit = AuditLog.objects.get(action="membership.invite")
    assert (audit.actor, audit.after["email"]) == (owner_a, "chen.jing@example.test")
    assert AuditLog.objects.filter(action="membership.create", object_id=str(member.uuid)).exists()
    [email] = mailoutbox
    assert email.to == ["chen.jing@example.test"]
    assert "Org A" in email.subject
    link = re.search(r"http://testserver(/password-reset/\S+)", email.body).group(1)
    client.logout()
    form = client.get(link, follow=True)
    assert form.context["validlink"]
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a long new secret 42", "new_password2": "a long new secret 42"},
    )
    assert done.status_code == 302
    member.user.refresh_from_db()
    assert member.user.check_password("a long new secret 42")
    # The link works once.
    assert not client.get(link, follow=True).context["validlink"]


def test_an_invitation_is_refused_for_an_existing_member_and_writes_nothing(
    client, owner_a, manager_a1, mailoutbox, django_capture_on_commit_callbacks
):
    client.force_login(owner_a)
    members = Membership.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("accounts:staff-invite"),
            {"email": manager_a1.email, "role": Role.ACCOUNTANT},
        )
    assert response.status_code == 400
    assert User.objects.filter(username=manager_a1.email).exists() is False
    assert Membership.objects.count() == members
    assert mailoutbox == []


def test_an_invitation_cannot_reach_another_organisations_property(client, owner_a, property_b1):
    client.force_login(owner_a)
    response = client.post(
        reverse("accounts:staff-invite"),
        {"email": "x@example.test", "role": Role.MANAGER, "properties": [str(property_b1.uuid)]},
    )
    assert response.status_code == 400
    assert "properties" in response.context["form"].errors
    assert not User.objects.filter(username="x@example.test").exists()


def test_the_invitation_is_sent_again_until_a_password_is_set(
    client, owner_a, org_a, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invited = services.staff_invite(
            organisation=org_a,
            email="late@example.test",
            role=Role.MANAGER,
            actor=owner_a,
            base_url="http://testserver/",
            language="zh-hans",
        )
    client.force_login(owner_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_member_url("accounts:staff-resend", invited))
    assert response.status_code == 302
    assert len(mailoutbox) == 2
    assert "/password-reset/" in mailoutbox[1].body
    invited.user.set_password("now set 12345")
    invited.user.save()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(_member_url("accounts:staff-resend", invited))
    assert len(mailoutbox) == 2
    assert AuditLog.objects.filter(action="membership.invite_resend").count() == 1


# Roles -------------------------------------------------------------------------------------------


def test_a_role_change_is_audited_with_before_and_after(client, owner_a, org_a, property_a1):
    member = _member(org_a, Role.MANAGER, [property_a1])
    client.force_login(owner_a)
    response = client.post(_member_url("accounts:staff-role", member), {"role": Role.OWNER})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.role == Role.OWNER
    # Owners see every property.
    assert list(member.properties.all()) == []
    audit = AuditLog.objects.get(action="membership.set_role")
    assert audit.actor == owner_a
    assert audit.before == {"role": "manager", "properties": [str(property_a1.uuid)]}
    assert audit.after == {"role": "owner", "properties": []}


def test_an_owner_cannot_change_their_own_role(client, owner_a):
    client.force_login(owner_a)
    membership = owner_a.membership
    response = client.post(_member_url("accounts:staff-role", membership), {"role": Role.MANAGER})
    assert response.status_code == 400
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_the_last_owner_stays_an_owner(owner_a):
    with pytest.raises(ValidationError, match="only owner"):
        services.membership_set_role(membership=owner_a.membership, role=Role.MANAGER, actor=None)
    owner_a.membership.refresh_from_db()
    assert owner_a.membership.role == Role.OWNER
    assert not AuditLog.objects.filter(action="membership.set_role").exists()


def test_an_owner_can_step_down_once_there_is_another(owner_a, org_a):
    _member(org_a, Role.OWNER)
    services.membership_set_role(membership=owner_a.membership, role=Role.MANAGER, actor=None)
    owner_a.membership.refresh_from_db()
    assert owner_a.membership.role == Role.MANAGER


# Properties --------------------------------------------------------------------------------------


def test_assigned_properties_are_saved_and_audited(
    client, owner_a, org_a, property_a1, property_a2
):
    member = _member(org_a, Role.ACCOUNTANT, [property_a1])
    client.force_login(owner_a)
    response = client.post(
        _member_url("accounts:staff-properties", member),
        {"properties": [str(property_a1.uuid), str(property_a2.uuid)]},
    )
    assert response.status_code == 302
    assert set(member.properties.all()) == {property_a1, property_a2}
    audit = AuditLog.objects.get(action="membership.set_properties")
    assert audit.before == {"properties": [str(property_a1.uuid)]}
    assert audit.after == {"properties": sorted([str(property_a1.uuid), str(property_a2.uuid)])}
    # None ticked: every property.
    client.post(_member_url("accounts:staff-properties", member), {})
    assert list(member.properties.all()) == []


def test_another_organisations_property_cannot_be_assigned(
    client, owner_a, org_a, property_a1, property_b1
):
    member = _member(org_a, Role.MANAGER, [property_a1])
    client.force_login(owner_a)
    response = client.post(
        _member_url("accounts:staff-properties", member), {"properties": [str(property_b1.uuid)]}
    )
    assert response.status_code == 400
    assert list(member.properties.all()) == [property_a1]
    with pytest.raises(ValidationError):
        services.membership_set_properties(membership=member, properties=[property_b1], actor=None)
    assert list(member.properties.all()) == [property_a1]


def test_owners_cannot_be_limited_to_properties(client, owner_a, org_a, property_a1):
    other_owner = _member(org_a, Role.OWNER)
    client.force_login(owner_a)
    response = client.post(
        _member_url("accounts:staff-properties", other_owner),
        {"properties": [str(property_a1.uuid)]},
    )
    assert response.status_code == 400
    assert list(other_owner.properties.all()) == []


# Removal -----------------------------------------------------------------------------------------


def test_removing_a_member_takes_their_access_away_and_is_audited(client, owner_a, org_a):
    member = _member(org_a, Role.MANAGER)
    user = member.user
    client.force_login(owner_a)
    unconfirmed = client.post(_member_url("accounts:staff-remove", member))
    assert unconfirmed.status_code == 400
    assert Membership.objects.filter(pk=member.pk).exists()
    response = client.post(_member_url("accounts:staff-remove", member), {"confirm": "on"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=member.pk).exists()
    user.refresh_from_db()
    assert user.is_active is False
    audit = AuditLog.objects.get(action="membership.remove")
    assert (audit.actor, audit.before["role"], audit.after) == (owner_a, "manager", None)
    # Deactivated: the sign-in itself no longer works.
    client.force_login(user)
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))


def test_nobody_removes_themselves(client, owner_a, org_a):
    _member(org_a, Role.OWNER)
    client.force_login(owner_a)
    response = client.post(
        _member_url("accounts:staff-remove", owner_a.membership), {"confirm": "on"}
    )
    assert response.status_code == 400
    assert Membership.objects.filter(user=owner_a).exists()


def test_the_last_owner_cannot_be_removed(owner_a, org_a):
    other = _member(org_a, Role.OWNER).user
    services.membership_remove(membership=owner_a.membership, actor=other)
    with pytest.raises(ValidationError, match="only owner"):
        services.membership_remove(membership=other.membership, actor=None)
    assert Membership.objects.filter(user=other, role=Role.OWNER).exists()


def test_a_removed_member_can_be_invited_again(owner_a, org_a):
    member = _member(org_a, Role.MANAGER, username="back@example.test", email="back@example.test")
    services.membership_remove(membership=member, actor=owner_a)
    again = services.staff_invite(
        organisation=org_a,
        email="back@example.test",
        role=Role.ACCOUNTANT,
        actor=owner_a,
        base_url="http://testserver/",
        language="en",
    )
    assert again.user.pk == member.user.pk
    assert again.user.is_active
    assert not again.user.has_usable_password()

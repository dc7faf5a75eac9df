"""Staff management for owners: the members with their roles, properties and sign-in state; an
invitation by email; a member's role, properties and removal.

Every page needs ADMINISTER. A member's pages fetch the member inside the caller's scope first,
so another organisation's member is a 404 and only then does a role without ADMINISTER get 403.
"""

from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.forms_staff import InviteForm, PropertiesForm, RemoveForm, RoleForm
from accounts.models import Membership, Property
from prepaid.scoping import Capability, Role, Scope
from prepaid.staff import require, staff_view

LIST_TEMPLATE = "accounts/staff_list.html"
MEMBER_TEMPLATE = "accounts/staff_member.html"


def _members(scope: Scope) -> QuerySet[Membership]:
    """The organisation's members. Staff limited to some properties see only colleagues limited
    to those properties too (and only so as to be refused: the pages need ADMINISTER)."""
    members = Membership.objects.filter(organisation=scope.organisation_id)
    if scope.property_ids is not None:
        outside = Property.objects.exclude(pk__in=scope.property_ids)
        members = (
            members.filter(properties__isnull=False).exclude(properties__in=outside).distinct()
        )
    return members


def _member_rows(scope: Scope) -> QuerySet[Membership]:
    """The member list in a fixed number of queries, whatever its length."""
    confirmed = TOTPDevice.objects.filter(user=OuterRef("user"), confirmed=True)
    return (
        _members(scope)
        .select_related("user")
        .prefetch_related(Prefetch("properties", queryset=Property.objects.order_by("name")))
        .annotate(two_factor=Exists(confirmed))
        .order_by("user__username")
    )


def _member_or_404(request, member_id) -> Membership:
    member = _member_rows(request.scope).filter(uuid=member_id).first()
    if member is None:
        raise Http404("No member matches.")
    return member


def _display_zone(scope: Scope) -> ZoneInfo:
    """Sign-in times are shown in the organisation's first property's time zone."""
    zone = (
        Property.objects.filter(organisation=scope.organisation_id)
        .order_by("name")
        .values_list("time_zone", flat=True)
        .first()
    )
    return ZoneInfo(zone or settings.TIME_ZONE)


def _base_url(request) -> str:
    return request.build_absolute_uri("/")


def _list_page(request, invite_form: InviteForm, status: int = 200):
    context = {
        "members": _member_rows(request.scope),
        "form": invite_form,
        "zone": _display_zone(request.scope),
    }
    return render(request, LIST_TEMPLATE, context, status=status)


@staff_view(read=Capability.ADMINISTER)
def staff_list(request):
    return _list_page(request, InviteForm(scope=request.scope, initial={"role": Role.MANAGER}))


@staff_view(read=Capability.ADMINISTER)
@require_POST
def staff_invite(request):
    form = InviteForm(request.POST, scope=request.scope)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.staff_invite(
                organisation=request.scope.organisation,
                email=data["email"],
                name=data["name"],
                role=data["role"],
                properties=data["properties"],
                actor=request.user,
                base_url=_base_url(request),
                language=get_language(),
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(
                request,
                _("%(email)s is invited: an email with a link to set a password is on its way.")
                % {"email": data["email"]},
            )
            return redirect("accounts:staff")
    return _list_page(request, form, status=400)


def _add_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


def _member_page(request, member: Membership, *, status: int = 200, **forms):
    scope = request.scope
    context = {
        "member": member,
        "is_self": member.user_id == request.user.pk,
        "zone": _display_zone(scope),
        "role_form": forms.get("role_form") or RoleForm(scope=scope, initial={"role": member.role}),
        "properties_form": forms.get("properties_form")
        or PropertiesForm(
            scope=scope,
            role=member.role,
            initial={"properties": [prop.uuid for prop in member.properties.all()]},
        ),
        "remove_form": forms.get("remove_form") or RemoveForm(),
        "pending": not member.user.has_usable_password(),
    }
    return render(request, MEMBER_TEMPLATE, context, status=status)


@staff_view
def staff_member(request, member_id):
    member = _member_or_404(request, member_id)
    require(request, Capability.ADMINISTER)
    return _member_page(request, member)


@staff_view
@require_POST
def staff_role(request, member_id):
    member = _member_or_404(request, member_id)
    require(request, Capability.ADMINISTER)
    form = RoleForm(request.POST, scope=request.scope)
    if form.is_valid():
        if member.user_id == request.user.pk:
            form.add_error("role", _("You cannot change your own role; ask another owner."))
        else:
            try:
                services.membership_set_role(
                    membership=member, role=form.cleaned_data["role"], actor=request.user
                )
            except ValidationError as error:
                _add_errors(form, error)
            else:
                messages.success(request, _("The role is changed."))
                return redirect("accounts:staff-member", member_id=member.uuid)
    return _member_page(request, member, status=400, role_form=form)


@staff_view
@require_POST
def staff_properties(request, member_id):
    member = _member_or_404(request, member_id)
    require(request, Capability.ADMINISTER)
    form = PropertiesForm(request.POST, scope=request.scope, role=member.role)
    if form.is_valid():
        try:
            services.membership_set_properties(
                membership=member, properties=form.cleaned_data["properties"], actor=request.user
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, _("The properties are saved."))
            return redirect("accounts:staff-member", member_id=member.uuid)
    return _member_page(request, member, status=400, properties_form=form)


@staff_view
@require_POST
def staff_resend(request, member_id):
    member = _member_or_404(request, member_id)
    require(request, Capability.ADMINISTER)
    try:
        services.staff_invite_resend(
            membership=member,
            actor=request.user,
            base_url=_base_url(request),
            language=get_language(),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            _("The invitation is sent to %(email)s again.") % {"email": member.user.email},
        )
    return redirect("accounts:staff-member", member_id=member.uuid)


@staff_view
@require_POST
def staff_remove(request, member_id):
    member = _member_or_404(request, member_id)
    require(request, Capability.ADMINISTER)
    form = RemoveForm(request.POST)
    if form.is_valid():
        try:
            services.membership_remove(membership=member, actor=request.user)
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(
                request,
                _("%(user)s no longer has access.") % {"user": member.user.get_username()},
            )
            return redirect("accounts:staff")
    return _member_page(request, member, status=400, remove_form=form)


urlpatterns = [
    path("staff/", staff_list, name="staff"),
    path("staff/invite/", staff_invite, name="staff-invite"),
    path("staff/<uuid:member_id>/", staff_member, name="staff-member"),
    path("staff/<uuid:member_id>/role/", staff_role, name="staff-role"),
    path("staff/<uuid:member_id>/properties/", staff_properties, name="staff-properties"),
    path("staff/<uuid:member_id>/invite/", staff_resend, name="staff-resend"),
    path("staff/<uuid:member_id>/remove/", staff_remove, name="staff-remove"),
]

"""The staff-management and bulk-import URLs in the access matrix: every one needs ADMINISTER."""

from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import services
from accounts.models import Membership
from prepaid.scoping import Capability, Role
from tests import factories
from tests.staff_matrix import StaffUrl

ADMINISTER = Capability.ADMINISTER


def _member(prop):
    """A manager limited to the property: limited staff of other properties do not see them."""
    user = factories.UserFactory()
    membership = services.membership_create(
        user=user, organisation=prop.organisation, role=Role.MANAGER, actor=None, properties=[prop]
    )
    return {"member_id": membership.uuid}


def _units_file(kwargs):
    return {
        "kind": "units",
        "file": SimpleUploadedFile("units.csv", b"property_code,name\r\nA1,Matrix 1\r\n"),
    }


def _same_properties(kwargs):
    """The member's own property again: with none ticked they would see every property, and
    limited staff would no longer see them."""
    membership = Membership.objects.get(uuid=kwargs["member_id"])
    return {"properties": [str(prop.uuid) for prop in membership.properties.all()]}


def _member_post(**post) -> StaffUrl:
    return StaffUrl(kwargs=_member, get=False, post=ADMINISTER, read=ADMINISTER, **post)


STAFF_URLS = {
    "accounts:staff": StaffUrl(read=ADMINISTER),
    "accounts:staff-invite": StaffUrl(
        get=False,
        post=ADMINISTER,
        read=ADMINISTER,
        post_data=lambda kwargs: {"email": "invitee@example.test", "role": Role.MANAGER},
    ),
    "accounts:staff-member": StaffUrl(kwargs=_member, read=ADMINISTER),
    "accounts:staff-role": _member_post(post_data=lambda kwargs: {"role": Role.ACCOUNTANT}),
    "accounts:staff-properties": _member_post(post_data=_same_properties),
    "accounts:staff-resend": _member_post(),
    # Without the confirmation an owner's POST is a 400 and the member stays, so every role's
    # request is checked against the same member.
    "accounts:staff-remove": _member_post(),
    "accounts:imports": StaffUrl(read=ADMINISTER, post=ADMINISTER, post_data=_units_file),
    "accounts:import-template": StaffUrl(read=ADMINISTER, query={"kind": "units", "format": "csv"}),
    "accounts:import-review": StaffUrl(read=ADMINISTER),
    "accounts:import-commit": StaffUrl(get=False, post=ADMINISTER, read=ADMINISTER),
}

"""Forms of the staff pages: inviting a member, their role, their properties, their removal."""

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Property
from prepaid.scoping import Role, Scope


class _PropertiesField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Property) -> str:
        return f"{obj.name} ({obj.code})"


def _properties_field() -> _PropertiesField:
    return _PropertiesField(
        queryset=Property.objects.none(),
        to_field_name="uuid",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=_("Properties"),
        help_text=_("Tick none for every property, including ones added later."),
    )


def _role_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        choices=[
            (Role.OWNER, _("Owner: everything, including settings, tariffs, refunds and staff")),
            (Role.MANAGER, _("Manager: units, tenants, meters, relays, top-ups and alarms")),
            (Role.ACCOUNTANT, _("Accountant: reads money and reports, changes nothing")),
        ],
        label=_("Role"),
    )


class _ScopedForm(forms.Form):
    """A form whose property choices are the caller's organisation's properties only."""

    def __init__(self, *args, scope: Scope, **kwargs):
        super().__init__(*args, **kwargs)
        if "properties" in self.fields:
            self.fields["properties"].queryset = Property.objects.for_scope(scope).order_by("name")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("role") == Role.OWNER and cleaned.get("properties"):
            self.add_error("properties", _("Owners see every property; tick none."))
        return cleaned


class InviteForm(_ScopedForm):
    email = forms.EmailField(
        label=_("Email address"),
        help_text=_("The invitation goes here, and it becomes their username."),
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    name = forms.CharField(label=_("Name"), max_length=150, required=False)
    role = _role_field()
    properties = _properties_field()


class RoleForm(_ScopedForm):
    role = _role_field()


class PropertiesForm(_ScopedForm):
    properties = _properties_field()

    def __init__(self, *args, role: str, **kwargs):
        self.role = role
        super().__init__(*args, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if self.role == Role.OWNER and cleaned.get("properties"):
            self.add_error("properties", _("Owners see every property; tick none."))
        return cleaned


class RemoveForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("Yes, take this member's access away"),
        help_text=_("They can no longer sign in to the dashboard. The audit log keeps their name."),
    )

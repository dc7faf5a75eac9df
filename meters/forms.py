"""The staff dashboard's forms for meters and alarms: the list filters, a relay switch with its
reason, a meter's detector settings, and the notes of acknowledging and resolving an alarm."""

import uuid
from enum import StrEnum

from django import forms
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Property
from meters.models import Alarm, Meter
from meters.selectors import AlarmState, Online, Relay
from prepaid.scoping import Scope

# The models' choice labels are not translated; the dashboard's are.
UTILITY_CHOICES = [
    (Meter.Utility.ELECTRICITY, _("Electricity")),
    (Meter.Utility.WATER, _("Water")),
]
# The model's labels are translatable.
ALARM_KIND_CHOICES = Alarm.Kind.choices
ALARM_SEVERITY_CHOICES = [
    (Alarm.Severity.INFO, _("Info")),
    (Alarm.Severity.WARNING, _("Warning")),
    (Alarm.Severity.CRITICAL, _("Critical")),
]


class _ScopedFilterForm(forms.Form):
    """Filters over GET: every field optional; an invalid one is reported and ignored."""

    property = forms.ModelChoiceField(
        queryset=Property.objects.none(),
        to_field_name="uuid",
        required=False,
        label=_("Property"),
        empty_label=_("All properties"),
    )

    def __init__(self, data, *, scope: Scope):
        super().__init__(data)
        self.fields["property"].queryset = Property.objects.for_scope(scope).order_by("name")

    def filters(self) -> dict:
        """The valid filters, by the selector's keyword names."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}


class MeterFilterForm(_ScopedFilterForm):
    q = forms.CharField(required=False, max_length=64, label=_("Serial or unit"))
    utility = forms.ChoiceField(
        choices=[("", _("All utilities")), *UTILITY_CHOICES],
        required=False,
        label=_("Utility"),
    )
    online = forms.ChoiceField(
        choices=[
            ("", _("Online or not")),
            (Online.ONLINE, _("Online")),
            (Online.OFFLINE, _("Offline")),
            (Online.UNKNOWN, _("Never seen")),
        ],
        required=False,
        label=_("Connection"),
    )
    relay = forms.ChoiceField(
        choices=[
            ("", _("Any relay state")),
            (Relay.OPEN, _("Cut off (relay open)")),
            (Relay.CLOSED, _("Supplied (relay closed)")),
            (Relay.PENDING, _("Command pending")),
        ],
        required=False,
        label=_("Relay"),
    )

    field_order = ["q", "property", "utility", "online", "relay"]


class AlarmFilterForm(_ScopedFilterForm):
    kind = forms.ChoiceField(
        choices=[("", _("All kinds")), *ALARM_KIND_CHOICES], required=False, label=_("Kind")
    )
    severity = forms.ChoiceField(
        choices=[("", _("All severities")), *ALARM_SEVERITY_CHOICES],
        required=False,
        label=_("Severity"),
    )
    state = forms.ChoiceField(
        choices=[
            (AlarmState.OPEN, _("Open")),
            (AlarmState.UNACKNOWLEDGED, _("Open, not yet acknowledged")),
            (AlarmState.ACKNOWLEDGED, _("Acknowledged, not yet resolved")),
            (AlarmState.RESOLVED, _("Resolved")),
            (AlarmState.ALL, _("All")),
        ],
        required=False,
        label=_("State"),
    )

    field_order = ["property", "kind", "severity", "state"]


class RelayAction(StrEnum):
    CUT_OFF = "cut_off"
    RESTORE = "restore"


class RelayForm(forms.Form):
    """Cut off or restore a meter's supply, with the reason the audit log keeps. The key is
    made when the form is shown, so submitting the same form twice switches once."""

    ACTIONS = {RelayAction.CUT_OFF: False, RelayAction.RESTORE: True}

    action = forms.ChoiceField(
        choices=[(RelayAction.CUT_OFF, _("Cut off")), (RelayAction.RESTORE, _("Restore"))],
        widget=forms.HiddenInput,
    )
    reason = forms.CharField(
        max_length=300,
        label=_("Reason"),
        help_text=_("Kept in the audit log with your name."),
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    idempotency_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, data=None, *, action: str):
        super().__init__(
            data,
            auto_id=f"{action}-%s",
            initial={"action": action, "idempotency_key": uuid.uuid4()},
        )
        self.action_name = action

    @property
    def close(self) -> bool:
        return self.ACTIONS[self.cleaned_data["action"]]

    @classmethod
    def action_of(cls, data) -> str:
        """The action a posted form was for, to show it again in the right dialog."""
        action = data.get("action")
        return action if action in cls.ACTIONS else RelayAction.CUT_OFF


class MeterSettingsForm(forms.Form):
    """What the detectors need to know about a meter. The feeder is one of the property's
    meters of the same utility in service (or the one it names already); the service checks
    the rest, loops included."""

    feeder = forms.ModelChoiceField(
        queryset=Meter.objects.none(),
        to_field_name="uuid",
        required=False,
        label=_("Fed by"),
        empty_label=_("No feeder of its own"),
        help_text=_(
            "The meter upstream: losses compare a feeder's day with the meters it feeds. "
            "Without one, the property's main meter feeds it."
        ),
    )
    power_limit_w = forms.IntegerField(
        min_value=1,
        max_value=2_147_483_647,
        required=False,
        label=_("Contracted power limit (W)"),
        help_text=_("Power above it for long is an overload."),
    )
    exports_energy = forms.BooleanField(
        required=False,
        label=_("It may export energy (solar panels)"),
        help_text=_("Export and reverse power are then normal, not an alarm."),
    )

    def __init__(self, data=None, *, meter: Meter):
        super().__init__(
            data,
            auto_id="settings-%s",
            initial={
                "feeder": meter.feeder.uuid if meter.feeder_id else None,
                "power_limit_w": meter.power_limit_w,
                "exports_energy": meter.exports_energy,
            },
        )
        feeder = self.fields["feeder"]
        if meter.unit_id is None:
            feeder.disabled = True
        else:
            feeder.queryset = (
                Meter.objects.filter(
                    Q(removed_at__isnull=True) | Q(pk=meter.feeder_id),
                    unit__property_id=meter.unit.property_id,
                    utility=meter.utility,
                )
                .exclude(Q(pk=meter.pk) | Q(unit_id=meter.unit_id))
                .select_related("unit")
                .order_by("serial")
            )
        feeder.label_from_instance = lambda other: f"{other.serial} ({other.unit.name})"


class AlarmAcknowledgeForm(forms.Form):
    note = forms.CharField(
        max_length=1000, required=False, label=_("Note"), widget=forms.TextInput()
    )


class AlarmResolveForm(forms.Form):
    note = forms.CharField(
        max_length=1000,
        label=_("What was done"),
        error_messages={"required": _("Say what was done to resolve the alarm.")},
        widget=forms.TextInput(),
    )

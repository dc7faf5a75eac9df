from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from meters.models import (
    Alarm,
    DetectorSettings,
    Finding,
    Gateway,
    LossDay,
    Meter,
    MeterProfile,
    MeterRejection,
    MqttDevice,
    MqttRejection,
    Reading,
    RelayCommand,
    VacantConsumption,
)


@admin.register(Meter)
class MeterAdmin(ReadOnlyAdmin):
    list_display = ["serial", "utility", "unit", "has_relay", "installed_at", "removed_at"]
    list_filter = ["utility", "has_relay", "organisation"]
    search_fields = ["serial"]
    list_select_related = ["unit__property"]


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = ["meter", "taken_at", "register", "source", "status", "reason", "received_at"]
    list_filter = ["status", "source"]
    search_fields = ["meter__serial"]
    date_hierarchy = "taken_at"
    list_select_related = ["meter"]


@admin.register(VacantConsumption)
class VacantConsumptionAdmin(ReadOnlyAdmin):
    list_display = ["meter", "period_start", "period_end", "quantity"]
    list_select_related = ["meter"]


@admin.register(MeterProfile)
class MeterProfileAdmin(ReadOnlyAdmin):
    list_display = ["name", "organisation", "updated_at"]
    list_filter = ["organisation"]


@admin.register(Gateway)
class GatewayAdmin(ReadOnlyAdmin):
    list_display = ["name", "property", "framer", "host", "port", "serial_port", "enabled"]
    list_filter = ["framer", "enabled", "property"]


@admin.register(MqttDevice)
class MqttDeviceAdmin(ReadOnlyAdmin):
    list_display = ["name", "property", "format", "key", "username", "online", "last_seen_at"]
    list_filter = ["format", "online", "organisation"]
    search_fields = ["name", "key", "username"]
    list_select_related = ["property"]
    # The hash never leaves the database through a screen.
    exclude = ["password_hash"]


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    list_display = [
        "opened_at",
        "kind",
        "severity",
        "meter",
        "message",
        "acknowledged_at",
        "closed_at",
    ]
    list_filter = ["kind", "severity", "organisation"]
    list_select_related = ["meter"]


@admin.register(RelayCommand)
class RelayCommandAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "meter", "close", "state", "attempts", "reason", "last_error"]
    list_filter = ["state", "close"]
    list_select_related = ["meter"]


@admin.register(MqttRejection)
class MqttRejectionAdmin(ReadOnlyAdmin):
    """Dropped MQTT messages per source and reason, unknown devices and topics included."""

    list_display = ["source", "reason", "count", "device", "first_at", "last_at"]
    list_filter = ["reason"]
    search_fields = ["source", "example"]
    list_select_related = ["device"]


@admin.register(MeterRejection)
class MeterRejectionAdmin(ReadOnlyAdmin):
    list_display = ["meter", "reason", "count", "first_at", "last_at"]
    list_select_related = ["meter"]


@admin.register(DetectorSettings)
class DetectorSettingsAdmin(ReadOnlyAdmin):
    list_display = ["property", "bypass_enabled", "max_gap_minutes"]
    list_select_related = ["property"]


@admin.register(Finding)
class FindingAdmin(ReadOnlyAdmin):
    list_display = ["key", "alarm", "found_at"]
    search_fields = ["key"]
    list_select_related = ["alarm"]


@admin.register(LossDay)
class LossDayAdmin(ReadOnlyAdmin):
    list_display = ["property", "day", "feeder_unit", "feeder_quantity", "fed_quantity"]
    list_filter = ["property"]
    date_hierarchy = "day"
    list_select_related = ["property", "feeder_unit"]

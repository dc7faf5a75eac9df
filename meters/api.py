from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Property, Unit
from billing.tasks import charge_meters_task
from meters import mqtt_devices, services
from meters.alarms import alarm_acknowledge, alarm_resolve
from meters.models import (
    Alarm,
    Gateway,
    Meter,
    MeterProfile,
    MeterRejection,
    MqttDevice,
    MqttRejection,
    Reading,
    RelayCommand,
)
from meters.protocols.mqtt_formats import Format
from meters.protocols.mqtt_topics import device_grants
from meters.relay import relay_command_issue
from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedRelatedField, ScopedViewSet
from prepaid.scoping import Capability


class MeterRejectionOut(serializers.ModelSerializer):
    class Meta:
        model = MeterRejection
        fields = ["reason", "count", "first_at", "last_at"]


class MeterOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    unit = serializers.UUIDField(source="unit.uuid", read_only=True, allow_null=True)
    property = serializers.UUIDField(source="unit.property.uuid", read_only=True, allow_null=True)
    gateway = serializers.UUIDField(source="gateway.uuid", read_only=True, allow_null=True)
    profile = serializers.UUIDField(source="profile.uuid", read_only=True, allow_null=True)
    mqtt_device = serializers.UUIDField(source="mqtt_device.uuid", read_only=True, allow_null=True)
    feeder = serializers.UUIDField(source="feeder.uuid", read_only=True, allow_null=True)
    # What the meter sent that could not be used, counted per reason.
    rejections = MeterRejectionOut(many=True, read_only=True)

    class Meta:
        model = Meter
        fields = [
            "id", "serial", "utility", "register_unit", "has_relay", "unit", "property",
            "installed_at", "removed_at", "gateway", "modbus_unit", "profile", "mqtt_device",
            "mqtt_channel", "mqtt_sml_key", "feeder", "power_limit_w", "exports_energy",
            "online", "last_seen_at", "relay_closed", "relay_confirmed_at", "rejections",
            "created_at", "updated_at",
        ]  # fmt: skip


class MeterSettingsIn(serializers.Serializer):
    """What the detectors need to know: the meter upstream that feeds this one (losses), the
    supply's contracted power limit (overload), and whether it may export (solar)."""

    feeder = ScopedRelatedField(
        queryset=Meter.objects.select_related("unit"), required=False, allow_null=True
    )
    power_limit_w = serializers.IntegerField(
        min_value=1, max_value=2_147_483_647, required=False, allow_null=True
    )
    exports_energy = serializers.BooleanField(required=False)


class MeterRegisterIn(MeterSettingsIn):
    serial = serializers.CharField(max_length=64)
    utility = serializers.ChoiceField(choices=Meter.Utility.choices)
    has_relay = serializers.BooleanField(default=False)
    unit = ScopedRelatedField(
        queryset=Unit.objects.select_related("property"), required=False, allow_null=True
    )
    installed_at = serializers.DateTimeField(required=False)

    def validate(self, data):
        scope = self.context["request"].scope
        if data.get("unit") is None and scope.property_ids is not None:
            raise serializers.ValidationError(
                {"unit": "Staff limited to some properties must install the meter in a unit."}
            )
        return data


class MeterUpdateIn(MeterSettingsIn):
    serial = serializers.CharField(max_length=64, required=False)
    has_relay = serializers.BooleanField(required=False)


class MeterInstallIn(serializers.Serializer):
    unit = ScopedRelatedField(queryset=Unit.objects.select_related("property"))
    installed_at = serializers.DateTimeField(required=False)


class MeterRemoveIn(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    removed_at = serializers.DateTimeField(required=False)


class MeterConnectIn(serializers.Serializer):
    gateway = ScopedRelatedField(queryset=Gateway.objects.all(), allow_null=True)
    modbus_unit = serializers.IntegerField(min_value=1, max_value=247, allow_null=True)
    profile = ScopedRelatedField(queryset=MeterProfile.objects.all(), allow_null=True)


class MeterConnectMqttIn(serializers.Serializer):
    device = ScopedRelatedField(queryset=MqttDevice.objects.all())
    channel = serializers.IntegerField(min_value=0, max_value=31, default=0)
    sml_key = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)


class MeterFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="unit__property__uuid")
    unit = filters.UUIDFilter(field_name="unit__uuid")
    utility = filters.ChoiceFilter(choices=Meter.Utility.choices)
    in_service = filters.BooleanFilter(method="filter_in_service")

    class Meta:
        model = Meter
        fields = ["property", "unit", "utility", "has_relay"]

    def filter_in_service(self, queryset, name, value):
        in_service = {"unit__isnull": False, "removed_at__isnull": True}
        return queryset.filter(**in_service) if value else queryset.exclude(**in_service)


class MeterViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Meter.objects.select_related(
        "unit__property", "gateway", "profile", "mqtt_device", "feeder"
    ).prefetch_related("rejections")
    serializer_class = MeterOut
    filterset_class = MeterFilter
    search_fields = ["serial"]
    ordering_fields = ["serial", "installed_at", "created_at"]

    @extend_schema(request=MeterRegisterIn, responses={201: MeterOut})
    def create(self, request):
        meter = services.meter_register(
            organisation=self.scope.organisation,
            actor=request.user,
            **self.validated(MeterRegisterIn),
        )
        return Response(MeterOut(meter).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MeterUpdateIn, responses=MeterOut)
    def partial_update(self, request, id):
        meter = self.get_object()
        services.meter_update(meter=meter, actor=request.user, **self.validated(MeterUpdateIn))
        return Response(MeterOut(meter).data)

    @extend_schema(request=MeterInstallIn, responses=MeterOut)
    @action(detail=True, methods=["post"])
    def install(self, request, id):
        meter = services.meter_install(
            meter=self.get_object(), actor=request.user, **self.validated(MeterInstallIn)
        )
        return Response(MeterOut(meter).data)

    @extend_schema(request=MeterConnectIn, responses=MeterOut)
    @action(detail=True, methods=["post"])
    def connect(self, request, id):
        meter = services.meter_connect(
            meter=self.get_object(), actor=request.user, **self.validated(MeterConnectIn)
        )
        return Response(MeterOut(meter).data)

    @extend_schema(request=MeterConnectMqttIn, responses=MeterOut)
    @action(detail=True, methods=["post"], url_path="connect-mqtt")
    def connect_mqtt(self, request, id):
        meter = services.meter_connect_mqtt(
            meter=self.get_object(), actor=request.user, **self.validated(MeterConnectMqttIn)
        )
        return Response(MeterOut(meter).data)

    @extend_schema(request=MeterRemoveIn, responses=MeterOut)
    @action(detail=True, methods=["post"])
    def remove(self, request, id):
        meter = services.meter_remove(
            meter=self.get_object(), actor=request.user, **self.validated(MeterRemoveIn)
        )
        return Response(MeterOut(meter).data)


class ReadingOut(serializers.ModelSerializer):
    meter = serializers.UUIDField(source="meter.uuid", read_only=True)
    serial = serializers.CharField(source="meter.serial", read_only=True)

    class Meta:
        model = Reading
        fields = [
            "meter",
            "serial",
            "taken_at",
            "register",
            "power_w",
            "voltage_v",
            "current_a",
            "relay_closed",
            "export_register",
            "flags",
            "source",
            "received_at",
            "status",
            "reason",
        ]


class ReadingRowIn(serializers.Serializer):
    serial = serializers.CharField(max_length=64)
    taken_at = serializers.DateTimeField()
    register = serializers.DecimalField(max_digits=20, decimal_places=6)
    power_w = serializers.FloatField(required=False, allow_null=True)
    voltage_v = serializers.FloatField(required=False, allow_null=True)
    current_a = serializers.FloatField(required=False, allow_null=True)
    relay_closed = serializers.BooleanField(required=False, allow_null=True)
    # The energy the meter counted back into the grid, in kWh.
    export_register = serializers.DecimalField(
        max_digits=20, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    # The meter's own alarm flags ("cover_open", "reverse"...).
    flags = serializers.ListField(
        child=serializers.CharField(max_length=services.MAX_FLAG_LENGTH),
        max_length=services.MAX_FLAGS,
        required=False,
        allow_null=True,
    )


class ReadingsIn(serializers.Serializer):
    readings = ReadingRowIn(many=True, allow_empty=False, max_length=1000)


class IngestOut(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class ReadingFilter(filters.FilterSet):
    meter = filters.UUIDFilter(field_name="meter__uuid")
    property = filters.UUIDFilter(field_name="meter__unit__property__uuid")
    status = filters.ChoiceFilter(choices=Reading.Status.choices)
    source = filters.ChoiceFilter(choices=Reading.Source.choices)
    since = filters.IsoDateTimeFilter(field_name="taken_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="taken_at", lookup_expr="lt")

    class Meta:
        model = Reading
        fields = ["meter", "property", "status", "source", "since", "until"]


class ReadingViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Meter readings, newest first, with the verdict of charging on each. POST pushes readings
    for meters that report over HTTP: all rows are stored or none, and charging starts at once."""

    queryset = Reading.objects.select_related("meter")
    serializer_class = ReadingOut
    filterset_class = ReadingFilter
    pagination_class = CursorPagination.with_ordering(("-taken_at", "-id"))
    ordering_fields: list[str] = []

    @extend_schema(request=ReadingsIn, responses={201: IngestOut})
    def create(self, request):
        rows = self.validated(ReadingsIn)["readings"]
        meters = Meter.objects.for_scope(self.scope)
        result = services.readings_ingest(meters=meters, rows=rows, source=Reading.Source.HTTP)
        meter_ids = list(
            meters.filter(serial__in={row["serial"] for row in rows}).values_list("pk", flat=True)
        )
        transaction.on_commit(lambda: charge_meters_task.delay(meter_ids))
        return Response(IngestOut(result).data, status=status.HTTP_201_CREATED)


class MeterProfileOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    built_in = serializers.SerializerMethodField()

    class Meta:
        model = MeterProfile
        fields = ["id", "name", "built_in", "definition", "created_at", "updated_at"]

    def get_built_in(self, profile: MeterProfile) -> bool:
        return profile.organisation_id is None


class MeterProfileIn(serializers.Serializer):
    """A profile's JSON as exported (GET) is what import (POST) takes."""

    name = serializers.CharField(max_length=100)
    definition = serializers.JSONField()


class MeterProfileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Meter models as data: which registers to read, how to decode them, how to switch the
    relay. Built-in profiles are shared and read-only; owners add their own."""

    queryset = MeterProfile.objects.all()
    serializer_class = MeterProfileOut
    write_capability = Capability.ADMINISTER
    search_fields = ["name"]

    @extend_schema(request=MeterProfileIn, responses={201: MeterProfileOut})
    def create(self, request):
        profile = services.meter_profile_create(
            organisation=self.scope.organisation,
            actor=request.user,
            **self.validated(MeterProfileIn),
        )
        return Response(MeterProfileOut(profile).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MeterProfileIn, responses=MeterProfileOut)
    def partial_update(self, request, id):
        profile = self.get_object()
        services.meter_profile_update(
            profile=profile, actor=request.user, **self.validated(MeterProfileIn, partial=True)
        )
        return Response(MeterProfileOut(profile).data)


class GatewayOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)

    class Meta:
        model = Gateway
        fields = ["id", "property", *services.GATEWAY_FIELDS, "created_at", "updated_at"]


class GatewayIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    framer = serializers.ChoiceField(choices=Gateway.Framer.choices, default=Gateway.Framer.TCP)
    host = serializers.CharField(max_length=255, required=False, allow_blank=True)
    port = serializers.IntegerField(min_value=1, max_value=65535, default=502)
    serial_port = serializers.CharField(max_length=100, required=False, allow_blank=True)
    baudrate = serializers.IntegerField(min_value=300, max_value=921600, default=9600)
    timeout_ms = serializers.IntegerField(min_value=50, max_value=60000, default=1000)
    retries = serializers.IntegerField(min_value=0, max_value=10, default=1)
    gap_ms = serializers.IntegerField(min_value=0, max_value=5000, default=20)
    enabled = serializers.BooleanField(default=True)


class GatewayCreateIn(GatewayIn):
    property = ScopedRelatedField(queryset=Property.objects.all())


class GatewayViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Gateway.objects.select_related("property")
    serializer_class = GatewayOut
    search_fields = ["name", "host"]

    @extend_schema(request=GatewayCreateIn, responses={201: GatewayOut})
    def create(self, request):
        gateway = services.gateway_create(actor=request.user, **self.validated(GatewayCreateIn))
        return Response(GatewayOut(gateway).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=GatewayIn, responses=GatewayOut)
    def partial_update(self, request, id):
        gateway = self.get_object()
        services.gateway_update(
            gateway=gateway, actor=request.user, **self.validated(GatewayIn, partial=True)
        )
        return Response(GatewayOut(gateway).data)


class MqttTopicGrantOut(serializers.Serializer):
    access = serializers.CharField()
    topic = serializers.CharField()


class MqttRejectionOut(serializers.ModelSerializer):
    class Meta:
        model = MqttRejection
        fields = ["reason", "count", "example", "first_at", "last_at"]


class MqttDeviceOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)
    # What to configure on the device: the topics its login may use, and how.
    topics = serializers.SerializerMethodField()
    # Messages it sent that could not be used, counted per reason.
    rejections = MqttRejectionOut(many=True, read_only=True)

    class Meta:
        model = MqttDevice
        fields = [
            "id", "property", "name", "format", "key", "username", "topics", "rejections",
            "credentials_rotated_at", "online", "last_seen_at", "created_at", "updated_at",
        ]  # fmt: skip

    @extend_schema_field(MqttTopicGrantOut(many=True))
    def get_topics(self, device: MqttDevice) -> list[dict[str, str]]:
        grants = device_grants(Format(device.format), device.key)
        return [{"access": access, "topic": topic} for access, topic in grants]


class MqttDeviceCredentialsOut(MqttDeviceOut):
    """The device with its broker password: the only answer that ever carries it."""

    password = serializers.SerializerMethodField()

    class Meta(MqttDeviceOut.Meta):
        fields = [*MqttDeviceOut.Meta.fields, "password"]

    def get_password(self, device: MqttDevice) -> str:
        return self.context["password"]


class MqttDeviceCreateIn(serializers.Serializer):
    property = ScopedRelatedField(queryset=Property.objects.all())
    name = serializers.CharField(max_length=100)
    format = serializers.ChoiceField(choices=MqttDevice.Format.choices)
    key = serializers.CharField(max_length=100)


class MqttDeviceUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class MqttDeviceFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    format = filters.ChoiceFilter(choices=MqttDevice.Format.choices)

    class Meta:
        model = MqttDevice
        fields = ["property", "format", "online"]


class MqttDeviceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Devices with their own broker login. The password appears once, in the answer to create
    or rotate-credentials; the broker learns it at the next `mqtt_auth_export`."""

    queryset = MqttDevice.objects.select_related("property").prefetch_related("rejections")
    serializer_class = MqttDeviceOut
    filterset_class = MqttDeviceFilter
    search_fields = ["name", "key", "username"]
    # Logins open the broker to a device: owners hand them out; managers may rename.
    write_capability = Capability.ADMINISTER
    action_capabilities = {"partial_update": Capability.OPERATE}

    @extend_schema(request=MqttDeviceCreateIn, responses={201: MqttDeviceCredentialsOut})
    def create(self, request):
        device, password = mqtt_devices.mqtt_device_create(
            actor=request.user, **self.validated(MqttDeviceCreateIn)
        )
        body = MqttDeviceCredentialsOut(device, context={"password": password}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=MqttDeviceUpdateIn, responses=MqttDeviceOut)
    def partial_update(self, request, id):
        device = self.get_object()
        mqtt_devices.mqtt_device_update(
            device=device, actor=request.user, **self.validated(MqttDeviceUpdateIn, partial=True)
        )
        return Response(MqttDeviceOut(device).data)

    @extend_schema(request=None, responses=MqttDeviceCredentialsOut)
    @action(detail=True, methods=["post"], url_path="rotate-credentials")
    def rotate_credentials(self, request, id):
        device = self.get_object()
        password = mqtt_devices.mqtt_device_rotate_credentials(device=device, actor=request.user)
        return Response(MqttDeviceCredentialsOut(device, context={"password": password}).data)


class RelayCommandOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    meter = serializers.UUIDField(source="meter.uuid", read_only=True)
    action = serializers.SerializerMethodField()
    actor = serializers.CharField(source="actor.get_username", read_only=True, allow_null=True)

    class Meta:
        model = RelayCommand
        fields = [
            "id",
            "meter",
            "action",
            "state",
            "reason",
            "actor",
            "created_at",
            "deadline",
            "attempts",
            "sent_at",
            "finished_at",
            "last_error",
        ]

    def get_action(self, command: RelayCommand) -> str:
        return "restore" if command.close else "cut_off"


class RelayCommandIn(serializers.Serializer):
    meter = ScopedRelatedField(queryset=Meter.objects.select_related("unit"))
    action = serializers.ChoiceField(choices=[("cut_off", "Cut off"), ("restore", "Restore")])
    reason = serializers.CharField(max_length=300)


class RelayCommandFilter(filters.FilterSet):
    meter = filters.UUIDFilter(field_name="meter__uuid")
    state = filters.ChoiceFilter(choices=RelayCommand.State.choices)

    class Meta:
        model = RelayCommand
        fields = ["meter", "state"]


class RelayCommandViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Cut-off and restore. A command runs at once on the commands queue; its state moves from
    queued to sent to confirmed (read back from the meter), or failed, expired or superseded."""

    queryset = RelayCommand.objects.select_related("meter", "actor")
    serializer_class = RelayCommandOut
    filterset_class = RelayCommandFilter
    pagination_class = CursorPagination.with_ordering(("-created_at", "-id"))

    @extend_schema(request=RelayCommandIn, responses={201: RelayCommandOut})
    def create(self, request):
        data = self.validated(RelayCommandIn)
        command = relay_command_issue(
            meter=data["meter"],
            close=data["action"] == "restore",
            actor=request.user,
            reason=data["reason"],
        )
        return Response(RelayCommandOut(command).data, status=status.HTTP_201_CREATED)


class AlarmOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    meter = serializers.UUIDField(source="meter.uuid", read_only=True, allow_null=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True, allow_null=True)

    class Meta:
        model = Alarm
        fields = [
            "id",
            "kind",
            "severity",
            "message",
            "meter",
            "property",
            "opened_at",
            "acknowledged_at",
            "closed_at",
            "notes",
        ]


class AlarmNoteIn(serializers.Serializer):
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class AlarmFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    meter = filters.UUIDFilter(field_name="meter__uuid")
    kind = filters.ChoiceFilter(choices=Alarm.Kind.choices)
    severity = filters.ChoiceFilter(choices=Alarm.Severity.choices)
    open = filters.BooleanFilter(field_name="closed_at", lookup_expr="isnull")

    class Meta:
        model = Alarm
        fields = ["property", "meter", "kind", "severity", "open"]


class AlarmViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Alarm.objects.select_related("meter", "property")
    serializer_class = AlarmOut
    filterset_class = AlarmFilter
    pagination_class = CursorPagination.with_ordering(("-opened_at", "-id"))

    @extend_schema(request=AlarmNoteIn, responses=AlarmOut)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, id):
        alarm = alarm_acknowledge(
            alarm=self.get_object(), actor=request.user, **self.validated(AlarmNoteIn)
        )
        return Response(AlarmOut(alarm).data)

    @extend_schema(request=AlarmNoteIn, responses=AlarmOut)
    @action(detail=True, methods=["post"])
    def resolve(self, request, id):
        alarm = alarm_resolve(
            alarm=self.get_object(), actor=request.user, **self.validated(AlarmNoteIn)
        )
        return Response(AlarmOut(alarm).data)

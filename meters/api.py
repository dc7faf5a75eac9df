from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Unit
from billing.tasks import charge_meters_task
from meters import services
from meters.models import Meter, Reading
from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedRelatedField, ScopedViewSet


class MeterOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    unit = serializers.UUIDField(source="unit.uuid", read_only=True, allow_null=True)
    property = serializers.UUIDField(source="unit.property.uuid", read_only=True, allow_null=True)

    class Meta:
        model = Meter
        fields = [
            "id", "serial", "utility", "register_unit", "has_relay", "unit", "property",
            "installed_at", "removed_at", "created_at", "updated_at",
        ]  # fmt: skip


class MeterRegisterIn(serializers.Serializer):
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


class MeterUpdateIn(serializers.Serializer):
    serial = serializers.CharField(max_length=64, required=False)
    has_relay = serializers.BooleanField(required=False)


class MeterInstallIn(serializers.Serializer):
    unit = ScopedRelatedField(queryset=Unit.objects.select_related("property"))
    installed_at = serializers.DateTimeField(required=False)


class MeterRemoveIn(serializers.Serializer):
    reason = serializers.CharField(max_length=500)
    removed_at = serializers.DateTimeField(required=False)


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
    queryset = Meter.objects.select_related("unit__property")
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


class ReadingPagination(CursorPagination):
    ordering = ("-taken_at", "-id")


class ReadingViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Meter readings, newest first, with the verdict of charging on each. POST pushes readings
    for meters that report over HTTP: all rows are stored or none, and charging starts at once."""

    queryset = Reading.objects.select_related("meter")
    serializer_class = ReadingOut
    filterset_class = ReadingFilter
    pagination_class = ReadingPagination
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

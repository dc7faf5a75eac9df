from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Unit
from meters import services
from meters.models import Meter
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

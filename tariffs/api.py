from django.db.models import Prefetch
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.models import Property
from meters.models import Meter
from prepaid.api.scoped import ScopedRelatedField, ScopedViewSet
from prepaid.scoping import Capability
from tariffs import services
from tariffs.models import Tariff, TariffVersion


class TariffVersionOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = TariffVersion
        fields = [
            "id",
            "effective_from",
            "kind",
            "flat_price",
            "bands",
            "periods",
            "standing_charge_per_day",
            "tax_rate",
            "prices_include_tax",
            "created_at",
        ]


class TariffOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)
    versions = TariffVersionOut(many=True, read_only=True)

    class Meta:
        model = Tariff
        fields = ["id", "property", "utility", "name", "created_at", "versions"]


class BandIn(serializers.Serializer):
    limit = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=6)


class PeriodIn(serializers.Serializer):
    name = serializers.CharField(max_length=30)
    start = serializers.TimeField(format="%H:%M")
    end = serializers.TimeField(format="%H:%M")
    price = serializers.DecimalField(max_digits=12, decimal_places=6)


class TariffVersionIn(serializers.Serializer):
    """Prices from a moment on. Numbers are strings; periods are keyed by day type (weekday,
    weekend, holiday) and must cover each day without gaps or overlaps."""

    effective_from = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=TariffVersion.Kind.choices)
    flat_price = serializers.DecimalField(
        max_digits=12, decimal_places=6, required=False, allow_null=True
    )
    bands = BandIn(many=True, required=False, default=list)
    periods = serializers.DictField(child=PeriodIn(many=True), required=False, default=dict)
    standing_charge_per_day = serializers.DecimalField(max_digits=12, decimal_places=6, default=0)
    tax_rate = serializers.DecimalField(max_digits=6, decimal_places=4, min_value=0, default=0)
    prices_include_tax = serializers.BooleanField(default=False)

    def validate(self, data):
        # Stored as the pricing engine reads it: decimal strings and "HH:MM" clock times.
        data["bands"] = [
            {
                "limit": None if band["limit"] is None else str(band["limit"]),
                "price": str(band["price"]),
            }
            for band in data.get("bands", [])
        ]
        data["periods"] = {
            day_type: [
                {
                    **period,
                    "start": period["start"].strftime("%H:%M"),
                    "end": period["end"].strftime("%H:%M"),
                    "price": str(period["price"]),
                }
                for period in periods
            ]
            for day_type, periods in data.get("periods", {}).items()
        }
        return data


class TariffIn(serializers.Serializer):
    property = ScopedRelatedField(queryset=Property.objects.all())
    utility = serializers.ChoiceField(choices=Meter.Utility.choices)
    name = serializers.CharField(max_length=100)
    version = TariffVersionIn()


class TariffFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    utility = filters.ChoiceFilter(choices=Meter.Utility.choices)

    class Meta:
        model = Tariff
        fields = ["property", "utility"]


class TariffViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Tariffs and their dated versions. Owners set prices; a new version never starts in the
    past, so what was charged stays charged."""

    queryset = Tariff.objects.select_related("property").prefetch_related(
        Prefetch("versions", queryset=TariffVersion.objects.order_by("effective_from"))
    )
    serializer_class = TariffOut
    filterset_class = TariffFilter
    write_capability = Capability.ADMINISTER
    ordering_fields = ["name", "created_at"]

    @extend_schema(request=TariffIn, responses={201: TariffOut})
    def create(self, request):
        data = self.validated(TariffIn)
        tariff = services.tariff_create(
            property=data["property"],
            utility=data["utility"],
            name=data["name"],
            actor=request.user,
            version=dict(data["version"]),
        )
        return Response(
            TariffOut(self.get_queryset().get(pk=tariff.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=TariffVersionIn, responses={201: TariffOut})
    @action(detail=True, methods=["post"])
    def versions(self, request, id):
        tariff = self.get_object()
        services.tariff_version_add(
            tariff=tariff, actor=request.user, **self.validated(TariffVersionIn)
        )
        return Response(
            TariffOut(self.get_queryset().get(pk=tariff.pk)).data, status=status.HTTP_201_CREATED
        )

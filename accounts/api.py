from decimal import Decimal

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import services
from accounts.models import (
    Account,
    Property,
    Tenant,
    Unit,
    validate_country_code,
    validate_currency_code,
    validate_time_zone,
)
from billing import control
from billing.models import BalancePolicy
from billing.selectors import days_of_credit_left
from prepaid.api.scoped import ScopedRelatedField, ScopedViewSet
from prepaid.scoping import Capability


class PropertyOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = Property
        fields = [
            "id", "name", "code", "time_zone", "currency", "country", "address",
            "poll_interval_minutes", "offline_after_missed_polls", "carbon_kg_per_kwh",
            "created_at", "updated_at",
        ]  # fmt: skip


class PropertyIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    code = serializers.RegexField(r"^[A-Z0-9-]{1,12}$", max_length=12)
    time_zone = serializers.CharField(max_length=64, validators=[validate_time_zone])
    currency = serializers.CharField(validators=[validate_currency_code])
    country = serializers.CharField(validators=[validate_country_code])
    address = serializers.CharField(required=False, allow_blank=True)
    poll_interval_minutes = serializers.IntegerField(min_value=1, max_value=60, default=15)
    offline_after_missed_polls = serializers.IntegerField(min_value=1, max_value=100, default=3)
    carbon_kg_per_kwh = serializers.DecimalField(
        max_digits=6, decimal_places=4, min_value=Decimal(0), max_value=Decimal(5), required=False
    )


class BalancePolicyOut(serializers.ModelSerializer):
    class Meta:
        model = BalancePolicy
        fields = [*control.POLICY_FIELDS, "updated_at"]


class BalancePolicyIn(serializers.Serializer):
    warning_levels = serializers.ListField(
        child=serializers.DecimalField(max_digits=14, decimal_places=4), max_length=10
    )
    warning_days = serializers.IntegerField(min_value=1, max_value=60, allow_null=True)
    cutoff_threshold = serializers.DecimalField(max_digits=14, decimal_places=4)
    restore_threshold = serializers.DecimalField(max_digits=14, decimal_places=4)
    grace_minutes = serializers.IntegerField(min_value=0, max_value=24 * 60)
    protected_from = serializers.TimeField(allow_null=True)
    protected_to = serializers.TimeField(allow_null=True)
    protect_weekends = serializers.BooleanField()
    protect_holidays = serializers.BooleanField()


class PropertyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Property.objects.all()
    serializer_class = PropertyOut
    write_capability = Capability.ADMINISTER
    search_fields = ["name", "code", "address"]
    ordering_fields = ["name", "code", "created_at"]

    @extend_schema(request=PropertyIn, responses={201: PropertyOut})
    def create(self, request):
        if self.scope.property_ids is not None:
            return Response(
                {"detail": "Staff limited to some properties cannot add properties."},
                status=status.HTTP_403_FORBIDDEN,
            )
        prop = services.property_create(
            organisation=self.scope.organisation, actor=request.user, **self.validated(PropertyIn)
        )
        return Response(PropertyOut(prop).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PropertyIn, responses=PropertyOut)
    def partial_update(self, request, id):
        prop = self.get_object()
        services.property_update(
            property=prop, actor=request.user, **self.validated(PropertyIn, partial=True)
        )
        return Response(PropertyOut(prop).data)

    @extend_schema(methods=["GET"], responses=BalancePolicyOut)
    @extend_schema(methods=["PATCH"], request=BalancePolicyIn, responses=BalancePolicyOut)
    @action(detail=True, methods=["get", "patch"], url_path="balance-policy")
    def balance_policy(self, request, id):
        """When the property's tenants are cut off and restored, and when they never are."""
        prop = self.get_object()
        if request.method == "PATCH":
            policy = control.balance_policy_update(
                property=prop, actor=request.user, **self.validated(BalancePolicyIn, partial=True)
            )
        else:
            policy = control.balance_policy(property=prop)
        return Response(BalancePolicyOut(policy).data)


class UnitOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)

    class Meta:
        model = Unit
        fields = ["id", "property", "name", "kind", "floor", "created_at", "updated_at"]


class UnitCreateIn(serializers.Serializer):
    property = ScopedRelatedField(queryset=Property.objects.all())
    name = serializers.CharField(max_length=60)
    kind = serializers.ChoiceField(choices=Unit.Kind.choices, default=Unit.Kind.FLAT)
    floor = serializers.CharField(max_length=20, required=False, allow_blank=True)


class UnitUpdateIn(serializers.Serializer):
    name = serializers.CharField(max_length=60, required=False)
    kind = serializers.ChoiceField(choices=Unit.Kind.choices, required=False)
    floor = serializers.CharField(max_length=20, required=False, allow_blank=True)


class UnitFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    kind = filters.ChoiceFilter(choices=Unit.Kind.choices)

    class Meta:
        model = Unit
        fields = ["property", "kind"]


class UnitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Unit.objects.select_related("property")
    serializer_class = UnitOut
    filterset_class = UnitFilter
    search_fields = ["name", "floor"]
    ordering_fields = ["name", "created_at"]

    @extend_schema(request=UnitCreateIn, responses={201: UnitOut})
    def create(self, request):
        unit = services.unit_create(actor=request.user, **self.validated(UnitCreateIn))
        return Response(UnitOut(unit).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=UnitUpdateIn, responses=UnitOut)
    def partial_update(self, request, id):
        unit = self.get_object()
        services.unit_update(unit=unit, actor=request.user, **self.validated(UnitUpdateIn))
        return Response(UnitOut(unit).data)


class TenantOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = Tenant
        fields = ["id", "name", "phone", "email", "preferred_language", "created_at", "updated_at"]


class TenantIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    phone = serializers.CharField(max_length=30, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    preferred_language = serializers.ChoiceField(
        choices=Tenant.Language.choices, default=Tenant.Language.ENGLISH
    )


class TenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Tenant.objects.all()
    serializer_class = TenantOut
    search_fields = ["name", "phone", "email"]
    ordering_fields = ["name", "created_at"]

    @extend_schema(request=TenantIn, responses={201: TenantOut})
    def create(self, request):
        tenant = services.tenant_create(
            organisation=self.scope.organisation, actor=request.user, **self.validated(TenantIn)
        )
        return Response(TenantOut(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TenantIn, responses=TenantOut)
    def partial_update(self, request, id):
        tenant = self.get_object()
        data = self.validated(TenantIn, partial=True)
        services.tenant_update(tenant=tenant, actor=request.user, **data)
        return Response(TenantOut(tenant).data)


class AccountOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    tenant = serializers.UUIDField(source="tenant.uuid", read_only=True)
    unit = serializers.UUIDField(source="unit.uuid", read_only=True)
    property = serializers.UUIDField(source="unit.property.uuid", read_only=True)
    balance = serializers.DecimalField(
        source="wallet.balance", max_digits=18, decimal_places=4, read_only=True
    )
    currency = serializers.CharField(source="wallet.currency", read_only=True)
    # Estimated from the last two weeks' spending by hour of the week; null without enough.
    days_of_credit_left = serializers.SerializerMethodField()

    class Meta:
        model = Account
        fields = [
            "id", "tenant", "unit", "property", "mode", "status", "opened_at", "closed_at",
            "protected", "balance", "currency", "days_of_credit_left", "created_at",
            "updated_at",
        ]  # fmt: skip

    @extend_schema_field(serializers.DecimalField(max_digits=6, decimal_places=1, allow_null=True))
    def get_days_of_credit_left(self, account: Account):
        # Lists pass every row's estimate in the context, from one query.
        estimates = self.context.get("days_of_credit_left")
        if estimates is None:
            estimates = days_of_credit_left(accounts=[account])
        value = estimates[account.pk]
        return None if value is None else str(value)


class AccountOpenIn(serializers.Serializer):
    tenant = ScopedRelatedField(queryset=Tenant.objects.all())
    unit = ScopedRelatedField(queryset=Unit.objects.select_related("property"))
    mode = serializers.ChoiceField(choices=Account.Mode.choices, default=Account.Mode.PREPAID)
    opened_at = serializers.DateTimeField(required=False)
    protected = serializers.BooleanField(default=False)


class AccountProtectIn(serializers.Serializer):
    protected = serializers.BooleanField()
    reason = serializers.CharField(max_length=500)


class AccountCloseIn(serializers.Serializer):
    closed_at = serializers.DateTimeField(required=False)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class AccountFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="unit__property__uuid")
    unit = filters.UUIDFilter(field_name="unit__uuid")
    tenant = filters.UUIDFilter(field_name="tenant__uuid")
    status = filters.ChoiceFilter(choices=Account.Status.choices)
    mode = filters.ChoiceFilter(choices=Account.Mode.choices)
    protected = filters.BooleanFilter()

    class Meta:
        model = Account
        fields = ["property", "unit", "tenant", "status", "mode", "protected"]


class AccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Account.objects.select_related("tenant", "unit__property", "wallet")
    serializer_class = AccountOut
    filterset_class = AccountFilter
    search_fields = ["tenant__name", "tenant__phone", "unit__name"]
    ordering_fields = ["opened_at", "closed_at", "created_at"]

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self._out(page))

    def retrieve(self, request, id):
        return Response(self._out([self.get_object()])[0])

    def _out(self, accounts):
        estimates = days_of_credit_left(accounts=accounts)
        return AccountOut(accounts, many=True, context={"days_of_credit_left": estimates}).data

    @extend_schema(request=AccountOpenIn, responses={201: AccountOut}, summary="Move in")
    def create(self, request):
        account = services.account_open(actor=request.user, **self.validated(AccountOpenIn))
        return Response(AccountOut(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AccountProtectIn, responses=AccountOut)
    def partial_update(self, request, id):
        account = self.get_object()
        services.account_set_protected(
            account=account, actor=request.user, **self.validated(AccountProtectIn)
        )
        return Response(AccountOut(account).data)

    @extend_schema(request=AccountCloseIn, responses=AccountOut, summary="Move out")
    @action(detail=True, methods=["post"])
    def close(self, request, id):
        account = services.account_close(
            account=self.get_object(), actor=request.user, **self.validated(AccountCloseIn)
        )
        return Response(AccountOut(account).data)

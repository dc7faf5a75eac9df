"""Online payments over the API: the organisation's payment providers (owners configure them),
intents (read), and refunds started by owners."""

import hashlib

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from billing.api import IDEMPOTENCY_PARAMETER, AmountOut, idempotency_key
from payments import services
from payments.models import PROVIDER_SECRETS, PaymentIntent, Provider, ProviderConfig, Refund
from payments.selectors import provider_webhook_url
from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedViewSet
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS
from prepaid.scoping import Capability

_SECRET_NAMES = "; ".join(
    f"{provider}: {', '.join(names) or 'none'}" for provider, names in PROVIDER_SECRETS.items()
)


class ProviderConfigOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    secrets_set = serializers.SerializerMethodField(
        help_text="Which of the provider's secrets are stored; their values are never shown."
    )
    webhook_url = serializers.SerializerMethodField(
        help_text="Give the provider this address for its notifications."
    )

    class Meta:
        model = ProviderConfig
        fields = [
            "id", "provider", "enabled", "settings", "secrets_set", "webhook_url", "created_at",
            "updated_at",
        ]  # fmt: skip

    def get_secrets_set(self, config: ProviderConfig) -> dict[str, bool]:
        return config.secrets_set()

    def get_webhook_url(self, config: ProviderConfig) -> str:
        return provider_webhook_url(config=config)


class ProviderConfigIn(serializers.Serializer):
    provider = serializers.ChoiceField(choices=Provider.choices)
    enabled = serializers.BooleanField(default=True)
    settings = serializers.DictField(
        required=False, help_text="The provider's public settings, e.g. app ids and key serials."
    )
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        write_only=True,
        help_text=(
            "Secrets by name ("
            + "; ".join(
                f"{name}: {', '.join(names) or 'none'}" for name, names in PROVIDER_SECRETS.items()
            )
            + "). Left out or blank, a secret keeps its stored value."
        ),
    )


class ProviderConfigUpdateIn(ProviderConfigIn):
    provider = None
    enabled = serializers.BooleanField(required=False)


class ProviderConfigViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """How the organisation takes payments online. Owners add and change providers; secrets go
    in sealed and never come back out."""

    queryset = ProviderConfig.objects.order_by("provider")
    serializer_class = ProviderConfigOut
    write_capability = Capability.ADMINISTER
    ordering_fields: list[str] = []

    @extend_schema(request=ProviderConfigIn, responses={201: ProviderConfigOut})
    def create(self, request):
        data = self.validated(ProviderConfigIn)
        if ProviderConfig.objects.filter(
            organisation=self.scope.organisation, provider=data["provider"]
        ).exists():
            raise serializers.ValidationError(
                {"provider": "This provider is already set up; change it instead."}
            )
        config = services.provider_config_save(
            organisation=self.scope.organisation, actor=request.user, **data
        )
        return Response(ProviderConfigOut(config).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProviderConfigUpdateIn, responses=ProviderConfigOut)
    def partial_update(self, request, id):
        config = self.get_object()
        data = self.validated(ProviderConfigUpdateIn, partial=True)
        config = services.provider_config_save(
            organisation=self.scope.organisation,
            provider=config.provider,
            actor=request.user,
            enabled=data.get("enabled", config.enabled),
            settings=data.get("settings"),
            secrets=data.get("secrets"),
        )
        return Response(ProviderConfigOut(config).data)


class RefundOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    payment = serializers.UUIDField(source="intent.uuid", read_only=True)
    amount = AmountOut(currency="intent.currency")
    requested_by = serializers.CharField(
        source="requested_by.get_username", read_only=True, allow_null=True
    )

    class Meta:
        model = Refund
        fields = [
            "id", "payment", "amount", "reason", "status", "provider_refund_id",
            "failure_reason", "requested_by", "created_at", "completed_at",
        ]  # fmt: skip


class PaymentIntentOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)
    account = serializers.UUIDField(source="account.uuid", read_only=True)
    amount = AmountOut(currency="currency")
    refunded_amount = AmountOut(currency="currency")
    receipt = serializers.UUIDField(source="receipt.uuid", read_only=True, allow_null=True)
    refunds = RefundOut(many=True, read_only=True)

    class Meta:
        model = PaymentIntent
        fields = [
            "id", "reference", "property", "account", "provider", "amount", "currency",
            "status", "provider_reference", "transaction_id", "failure_reason",
            "refunded_amount", "receipt", "created_at", "succeeded_at", "expires_at", "refunds",
        ]  # fmt: skip


class RefundIn(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='A string such as "20.00"; at most what is left of the payment.',
    )
    reason = serializers.CharField(max_length=300)


class PaymentIntentFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    account = filters.UUIDFilter(field_name="account__uuid")
    status = filters.ChoiceFilter(choices=PaymentIntent.Status.choices)
    provider = filters.CharFilter()
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = PaymentIntent
        fields = ["property", "account", "status", "provider", "since", "until"]


class PaymentIntentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Online payments: what each tenant paid through which provider, and what became of it."""

    queryset = PaymentIntent.objects.select_related(
        "property", "account", "receipt"
    ).prefetch_related("refunds__requested_by")
    serializer_class = PaymentIntentOut
    filterset_class = PaymentIntentFilter
    pagination_class = CursorPagination
    ordering_fields: list[str] = []
    action_capabilities = {"refund": Capability.ADMINISTER}

    @extend_schema(
        request=RefundIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: RefundOut,
            200: OpenApiResponse(RefundOut, "Replayed: the refund started before."),
            400: OpenApiResponse(description="More than is left, no reason, or key reused."),
        },
        summary="Refund some or all of a payment (owners)",
    )
    @action(detail=True, methods=["post"])
    def refund(self, request, id):
        intent = self.get_object()
        key = idempotency_key(request, purpose="refund")
        data = self.validated(RefundIn)
        already = Refund.objects.filter(reference=_refund_reference(key)).exists()
        refund = services.refund_start(
            intent=intent,
            amount=data["amount"],
            reason=data["reason"],
            actor=request.user,
            idempotency_key=_refund_reference(key),
        )
        return Response(
            RefundOut(refund).data,
            status=status.HTTP_200_OK if already else status.HTTP_201_CREATED,
        )


def _refund_reference(key: str) -> str:
    # Refund references are sent to providers (out_refund_no: at most 64 characters).
    return hashlib.sha256(key.encode()).hexdigest()[:64]


class RefundFilter(filters.FilterSet):
    payment = filters.UUIDFilter(field_name="intent__uuid")
    status = filters.ChoiceFilter(choices=Refund.Status.choices)

    class Meta:
        model = Refund
        fields = ["payment", "status"]


class RefundViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = Refund.objects.select_related("intent", "requested_by")
    serializer_class = RefundOut
    filterset_class = RefundFilter
    pagination_class = CursorPagination
    ordering_fields: list[str] = []

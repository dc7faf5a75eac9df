"""Online payments over the API: intents (read), and refunds started by owners."""

import hashlib

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from billing.api import IDEMPOTENCY_PARAMETER, AmountOut, idempotency_key
from payments import services
from payments.models import PaymentIntent, Refund
from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedViewSet
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS
from prepaid.scoping import Capability


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

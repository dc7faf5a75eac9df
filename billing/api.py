"""Billing over the API: the ledger (read, and reversals for owners) and counter top-ups.

Money-moving requests need an `Idempotency-Key` header. The key is scoped to the caller's
organisation and turned into the ledger's unique idempotency key, so a retried request finds what
the first one posted instead of posting again, and a key reused for a different request is a 400.
"""

import hashlib

from django.db.models import Exists, OuterRef, Prefetch
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account
from billing import receipts, services
from billing.models import (
    BalanceWarning,
    Charge,
    CutoffDecision,
    DailyFreeze,
    LedgerTransaction,
    MeterFreeze,
    Posting,
    Receipt,
)
from notifications.texts import LANGUAGES
from prepaid.api.pagination import CursorPagination
from prepaid.api.scoped import ScopedRelatedField, ScopedViewSet
from prepaid.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, quantize
from prepaid.scoping import Capability

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 200
# LedgerTransaction.idempotency_key holds 200 characters, prefix included.
_STORED_KEY_MAX_LENGTH = 200

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        "A key you choose for this request, 1 to 200 printable characters (a UUID is a good "
        "choice). Retrying with the same key and body returns the original result instead of "
        "moving money twice; the same key with a different body is a 400."
    ),
)


def idempotency_key(request: Request, *, purpose: str) -> str:
    """The ledger key for this request's `Idempotency-Key` header, namespaced by organisation."""
    header = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not header:
        raise ValidationError(
            {IDEMPOTENCY_HEADER: f"Send an {IDEMPOTENCY_HEADER} header (a UUID, for instance)."}
        )
    if len(header) > IDEMPOTENCY_KEY_MAX_LENGTH or not header.isprintable():
        raise ValidationError(
            {
                IDEMPOTENCY_HEADER: f"The {IDEMPOTENCY_HEADER} must be 1 to "
                f"{IDEMPOTENCY_KEY_MAX_LENGTH} printable characters."
            }
        )
    prefix = f"{purpose}:{request.scope.organisation_id}:"
    if len(prefix) + len(header) <= _STORED_KEY_MAX_LENGTH:
        return prefix + header
    # Long keys are stored by digest, marked so they never collide with a short key as sent.
    return f"{prefix}sha256={hashlib.sha256(header.encode()).hexdigest()}"


class AmountOut(serializers.DecimalField):
    """An amount as a string to its currency's minor unit: "10.00" for CNY, "1000" for JPY."""

    def __init__(self, *, currency: str, **kwargs):
        self.currency_path = currency.split(".")
        kwargs.update(
            max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, read_only=True
        )
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        currency = instance
        for part in self.currency_path:
            currency = getattr(currency, part)
        return quantize(super().get_attribute(instance), currency)

    def to_representation(self, value):
        return str(value)


# Ledger transactions -----------------------------------------------------------------------------


class PostingOut(serializers.ModelSerializer):
    ledger_account = serializers.UUIDField(source="ledger_account.uuid", read_only=True)
    kind = serializers.CharField(source="ledger_account.kind", read_only=True)
    channel = serializers.CharField(source="ledger_account.channel", read_only=True)
    amount = AmountOut(currency="ledger_account.currency")

    class Meta:
        model = Posting
        fields = ["ledger_account", "kind", "channel", "amount"]


class LedgerTransactionOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)
    # A plain string in the schema: a second enum named "kind" besides Unit.kind would need an
    # ENUM_NAME_OVERRIDES entry in the settings to be named without a warning.
    kind = serializers.CharField(
        read_only=True, help_text=f"One of {', '.join(LedgerTransaction.Kind.values)}."
    )
    reverses = serializers.UUIDField(source="reverses.uuid", read_only=True, allow_null=True)
    reversed_by = serializers.UUIDField(source="reversed_by.uuid", read_only=True, allow_null=True)
    postings = PostingOut(many=True, read_only=True)

    class Meta:
        model = LedgerTransaction
        fields = [
            "id", "property", "kind", "currency", "effective_at", "created_at", "memo",
            "reverses", "reversed_by", "postings",
        ]  # fmt: skip


class ReverseIn(serializers.Serializer):
    reason = serializers.CharField(max_length=300)


class LedgerTransactionFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    kind = filters.ChoiceFilter(choices=LedgerTransaction.Kind.choices)
    since = filters.IsoDateTimeFilter(field_name="effective_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="effective_at", lookup_expr="lt")
    account = filters.UUIDFilter(
        method="filter_account", label="Tenant account whose wallet the transaction touches"
    )

    class Meta:
        model = LedgerTransaction
        fields = ["property", "kind", "since", "until", "account"]

    def filter_account(self, queryset, name, value):
        touches = Posting.objects.filter(
            transaction=OuterRef("pk"), ledger_account__tenant_account__uuid=value
        )
        return queryset.filter(Exists(touches))


class LedgerTransactionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    queryset = LedgerTransaction.objects.select_related(
        "property", "reverses", "reversed_by"
    ).prefetch_related(
        Prefetch(
            "postings", queryset=Posting.objects.select_related("ledger_account").order_by("pk")
        )
    )
    serializer_class = LedgerTransactionOut
    filterset_class = LedgerTransactionFilter
    pagination_class = CursorPagination
    # Cursor pagination fixes the order; free ordering would break its cursors.
    ordering_fields: list[str] = []
    action_capabilities = {"reverse": Capability.ADMINISTER}

    @extend_schema(
        request=ReverseIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: LedgerTransactionOut,
            200: OpenApiResponse(LedgerTransactionOut, "Replayed: the reversal posted before."),
            400: OpenApiResponse(description="Invalid, or the key was used for another request."),
        },
        summary="Reverse a top-up or adjustment",
    )
    @action(detail=True, methods=["post"])
    def reverse(self, request, id):
        # The object first: outside the scope is a 404 and a forbidden role a 403, header or not.
        original = self.get_object()
        key = idempotency_key(request, purpose="reverse")
        data = self.validated(ReverseIn)
        posted = services.transaction_reverse(
            original=original, actor=request.user, reason=data["reason"], idempotency_key=key
        )
        reversal = self.get_queryset().get(pk=posted.transaction.pk)
        return Response(
            LedgerTransactionOut(reversal).data,
            status=status.HTTP_201_CREATED if posted.created else status.HTTP_200_OK,
        )


# Counter top-ups ---------------------------------------------------------------------------------


class TopupOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    number = serializers.CharField(source="display_number", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)
    account = serializers.UUIDField(source="account.uuid", read_only=True)
    tenant_name = serializers.CharField(source="account.tenant.name", read_only=True)
    transaction = serializers.UUIDField(source="transaction.uuid", read_only=True)
    amount = AmountOut(currency="currency")

    class Meta:
        model = Receipt
        fields = [
            "id", "number", "property", "account", "tenant_name", "amount", "currency",
            "channel", "reference", "issued_at", "transaction",
        ]  # fmt: skip


class TopupIn(serializers.Serializer):
    account = ScopedRelatedField(queryset=Account.objects.select_related("unit__property"))
    amount = serializers.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='A string such as "50.00" (preferred, exact) or a JSON number.',
    )
    currency = serializers.RegexField(
        r"^[A-Z]{3}$",
        error_messages={"invalid": "Give the ISO 4217 code of the property's currency, e.g. CNY."},
    )
    channel = serializers.ChoiceField(choices=sorted(services.COUNTER_CHANNELS))
    reference = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class TopupFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    account = filters.UUIDFilter(field_name="account__uuid")
    channel = filters.CharFilter()
    since = filters.IsoDateTimeFilter(field_name="issued_at", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="issued_at", lookup_expr="lt")

    class Meta:
        model = Receipt
        fields = ["property", "account", "channel", "since", "until"]


class ReceiptCursorPagination(CursorPagination):
    ordering = ("-issued_at", "-id")


class ReceiptFileIn(serializers.Serializer):
    language = serializers.ChoiceField(choices=LANGUAGES, required=False)


RECEIPT_LANGUAGE_PARAMETER = OpenApiParameter(
    "language",
    str,
    OpenApiParameter.QUERY,
    enum=LANGUAGES,
    description="The receipt's language; the tenant's own when left out.",
)


class FileDownloadNegotiation(BaseContentNegotiation):
    """A download answers with its file whatever the Accept header asks for (the file is not
    rendered by DRF), and any error with the view's first renderer, JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class TopupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Top-ups and their receipts: counter top-ups (cash or bank transfer) are recorded here,
    and every credited online payment's receipt is listed here too."""

    queryset = Receipt.objects.select_related("property", "account__tenant", "transaction")
    serializer_class = TopupOut
    filterset_class = TopupFilter
    pagination_class = ReceiptCursorPagination
    ordering_fields: list[str] = []

    @extend_schema(
        request=TopupIn,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            201: TopupOut,
            200: OpenApiResponse(TopupOut, "Replayed: the receipt of the original top-up."),
            400: OpenApiResponse(description="Invalid, or the key was used for another top-up."),
        },
        summary="Record a counter top-up",
    )
    def create(self, request):
        key = idempotency_key(request, purpose="topup")
        data = self.validated(TopupIn)
        result = services.topup_record(actor=request.user, idempotency_key=key, **data)
        receipt = self.get_queryset().get(pk=result.receipt.pk)
        return Response(
            TopupOut(receipt).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )

    def _receipt_and_language(self) -> tuple[Receipt, str]:
        # The object first: outside the scope is a 404 whatever the query says.
        receipt = self.get_object()
        query = ReceiptFileIn(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        language = query.validated_data.get("language") or receipts.receipt_language(
            receipt=receipt
        )
        return receipt, language

    @extend_schema(
        parameters=[RECEIPT_LANGUAGE_PARAMETER],
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, "The receipt, A5."),
            404: OpenApiResponse(description="No such receipt in your scope."),
        },
        summary="Download the receipt as PDF",
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FileDownloadNegotiation)
    def pdf(self, request, id):
        receipt, language = self._receipt_and_language()
        response = HttpResponse(
            receipts.receipt_pdf(receipt=receipt, language=language),
            content_type=receipts.PDF_MIMETYPE,
        )
        filename = receipts.receipt_filename(receipt=receipt)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Content-Language"] = language
        return response

    @extend_schema(
        parameters=[RECEIPT_LANGUAGE_PARAMETER],
        responses={
            (200, "text/html"): OpenApiResponse(OpenApiTypes.STR, "A printable HTML page."),
            404: OpenApiResponse(description="No such receipt in your scope."),
        },
        summary="Show the receipt as a printable HTML page",
    )
    @action(detail=True, methods=["get"], content_negotiation_class=FileDownloadNegotiation)
    def html(self, request, id):
        receipt, language = self._receipt_and_language()
        response = HttpResponse(
            receipts.receipt_html(receipt=receipt, language=language),
            content_type="text/html; charset=utf-8",
        )
        response["Content-Language"] = language
        return response


class ChargeOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    account = serializers.UUIDField(source="account.uuid", read_only=True)
    meter = serializers.UUIDField(source="meter.uuid", read_only=True, allow_null=True)
    transaction = serializers.UUIDField(source="transaction.uuid", read_only=True, allow_null=True)
    explanation = serializers.SerializerMethodField()

    class Meta:
        model = Charge
        fields = [
            "id",
            "account",
            "meter",
            "kind",
            "period_start",
            "period_end",
            "quantity",
            "net",
            "tax",
            "lines",
            "explanation",
            "transaction",
            "created_at",
        ]

    def get_explanation(self, charge: Charge) -> list[str]:
        return [line["explanation"] for line in charge.lines if "explanation" in line]


class ChargeFilter(filters.FilterSet):
    account = filters.UUIDFilter(field_name="account__uuid")
    meter = filters.UUIDFilter(field_name="meter__uuid")
    property = filters.UUIDFilter(field_name="account__unit__property__uuid")
    kind = filters.ChoiceFilter(choices=Charge.Kind.choices)
    since = filters.IsoDateTimeFilter(field_name="period_end", lookup_expr="gte")
    until = filters.IsoDateTimeFilter(field_name="period_end", lookup_expr="lt")

    class Meta:
        model = Charge
        fields = ["account", "meter", "property", "kind", "since", "until"]


class ChargeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Exact, unrounded charges with the lines that explain them: which period, day type and
    tier, how much, at what price. The ledger carries their rounded running total."""

    queryset = Charge.objects.select_related("account", "meter", "transaction")
    serializer_class = ChargeOut
    filterset_class = ChargeFilter
    pagination_class = CursorPagination
    ordering_fields: list[str] = []


class CutoffDecisionOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    account = serializers.UUIDField(source="account.uuid", read_only=True)
    command = serializers.UUIDField(source="command.uuid", read_only=True, allow_null=True)

    class Meta:
        model = CutoffDecision
        fields = ["id", "account", "decided_at", "outcome", "balance", "until", "command"]


class CutoffDecisionFilter(filters.FilterSet):
    account = filters.UUIDFilter(field_name="account__uuid")
    property = filters.UUIDFilter(field_name="account__unit__property__uuid")
    outcome = filters.ChoiceFilter(choices=CutoffDecision.Outcome.choices)
    since = filters.IsoDateTimeFilter(field_name="decided_at", lookup_expr="gte")

    class Meta:
        model = CutoffDecision
        fields = ["account", "property", "outcome", "since"]


class CutoffDecisionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Every cut-off and restore decision, with its reason: cut, deferred for a protected
    period or a grace period, skipped for a protected account or a recovered balance."""

    queryset = CutoffDecision.objects.select_related("account", "command")
    serializer_class = CutoffDecisionOut
    filterset_class = CutoffDecisionFilter
    pagination_class = CursorPagination.with_ordering(("-decided_at", "-id"))
    ordering_fields: list[str] = []


class BalanceWarningOut(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    account = serializers.UUIDField(source="account.uuid", read_only=True)

    class Meta:
        model = BalanceWarning
        fields = [
            "id",
            "account",
            "kind",
            "balance",
            "level",
            "days_left",
            "cutoff_at",
            "created_at",
        ]


class BalanceWarningFilter(filters.FilterSet):
    account = filters.UUIDFilter(field_name="account__uuid")
    property = filters.UUIDFilter(field_name="account__unit__property__uuid")
    kind = filters.ChoiceFilter(choices=BalanceWarning.Kind.choices)
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = BalanceWarning
        fields = ["account", "property", "kind", "since"]


class BalanceWarningViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Every warning tenants were sent about their credit: a level fallen through, few days
    left, or a cut-off scheduled for the end of a protected period."""

    queryset = BalanceWarning.objects.select_related("account")
    serializer_class = BalanceWarningOut
    filterset_class = BalanceWarningFilter
    pagination_class = CursorPagination.with_ordering(("-created_at", "-id"))
    ordering_fields: list[str] = []


# Daily freeze ------------------------------------------------------------------------------------


class DailyFreezeOut(serializers.ModelSerializer):
    account = serializers.UUIDField(source="account.uuid", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)
    opening_balance = AmountOut(currency="currency")
    topups = AmountOut(currency="currency")
    energy_net = AmountOut(currency="currency")
    energy_tax = AmountOut(currency="currency")
    standing_net = AmountOut(currency="currency")
    standing_tax = AmountOut(currency="currency")
    refunds = AmountOut(currency="currency")
    adjustments = AmountOut(currency="currency", help_text="Adjustments and reversals, signed.")
    closing_balance = AmountOut(currency="currency")

    class Meta:
        model = DailyFreeze
        fields = [
            "account", "property", "day", "currency", "opening_balance", "topups", "energy_net",
            "energy_tax", "standing_net", "standing_tax", "refunds", "adjustments",
            "closing_balance", "electricity", "water", "month_end", "month_electricity",
            "month_water",
        ]  # fmt: skip


class DailyFreezeFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    account = filters.UUIDFilter(field_name="account__uuid")
    since = filters.DateFilter(field_name="day", lookup_expr="gte", label="From this day on")
    until = filters.DateFilter(field_name="day", lookup_expr="lt", label="Before this day")
    month_end = filters.BooleanFilter()

    class Meta:
        model = DailyFreeze
        fields = ["property", "account", "since", "until", "month_end"]


class DailyFreezeViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Each tenant account's wallet over each local day: its balance at the midnights either
    side, the day's top-ups, charges (energy and standing, net and tax), refunds and
    adjustments, and what its unit's meters measured. opening + top-ups - charges - refunds +
    adjustments = closing on every row. Month-end rows carry the month's tier counters."""

    queryset = DailyFreeze.objects.select_related("account", "property")
    serializer_class = DailyFreezeOut
    filterset_class = DailyFreezeFilter
    pagination_class = CursorPagination.with_ordering(("-day", "-id"))
    ordering_fields: list[str] = []


class MeterFreezeOut(serializers.ModelSerializer):
    meter = serializers.UUIDField(source="meter.uuid", read_only=True)
    serial = serializers.CharField(source="meter.serial", read_only=True)
    utility = serializers.CharField(source="meter.utility", read_only=True)
    unit = serializers.CharField(source="meter.register_unit", read_only=True)
    property = serializers.UUIDField(source="property.uuid", read_only=True)

    class Meta:
        model = MeterFreeze
        fields = [
            "meter", "serial", "utility", "unit", "property", "day", "register", "method",
            "estimated", "consumption",
        ]  # fmt: skip


class MeterFreezeFilter(filters.FilterSet):
    property = filters.UUIDFilter(field_name="property__uuid")
    meter = filters.UUIDFilter(field_name="meter__uuid")
    since = filters.DateFilter(field_name="day", lookup_expr="gte", label="From this day on")
    until = filters.DateFilter(field_name="day", lookup_expr="lt", label="Before this day")
    estimated = filters.BooleanFilter()

    class Meta:
        model = MeterFreeze
        fields = ["property", "meter", "since", "until", "estimated"]


class MeterFreezeViewSet(mixins.ListModelMixin, ScopedViewSet):
    """Each meter's register at each local midnight (read then, interpolated between the
    readings either side, or carried forward from the last one while the meter was silent;
    the last two are flagged estimated) and the day's consumption."""

    queryset = MeterFreeze.objects.select_related("meter", "property")
    serializer_class = MeterFreezeOut
    filterset_class = MeterFreezeFilter
    pagination_class = CursorPagination.with_ordering(("-day", "-id"))
    ordering_fields: list[str] = []

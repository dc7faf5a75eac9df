"""The staff pages of a tenancy's life: move-in, the tenancy and tenant pages, move-out with its
settlement statement (page and PDF), and the meter replacement wizard.

Views parse the form, call one service of `accounts.lifecycle` and render; the money and the
readings are the services' business. Forms that change something need OPERATE to be opened at
all; the tenancy, tenant and settlement pages need VIEW only.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from accounts import lifecycle
from accounts.forms_lifecycle import (
    STEP_ONE,
    STEP_TWO,
    MeterReplaceForm,
    MoveInForm,
    MoveOutForm,
    register_text,
)
from accounts.lifecycle import MeterReadFailed, reading_key
from accounts.models import Account, Tenant, Unit
from billing.models import LedgerTransaction, Posting, Receipt
from billing.receipts import CHANNEL_LABELS
from billing.selectors import days_of_credit_left
from billing.settlement import SettlementStatement, deposit_of, settlement_statement
from billing.settlement_pdf import (
    PDF_MIMETYPE,
    settlement_filename,
    statement_notes,
    statement_rows,
)
from billing.settlement_pdf import settlement_pdf as render_pdf
from meters.models import Meter, Reading
from notifications.texts import LANGUAGES, language_for
from portal.templatetags.portal import money
from prepaid.scoping import Capability
from prepaid.staff import scoped_or_404, staff_view

RECENT_TRANSACTIONS = 20
RECENT_RECEIPTS = 10
SUMMARY_POLL_SECONDS = 10
TRANSACTION_LABELS = {
    LedgerTransaction.Kind.TOPUP: gettext_lazy("Top-up"),
    LedgerTransaction.Kind.CHARGE: gettext_lazy("Consumption charge"),
    LedgerTransaction.Kind.STANDING_CHARGE: gettext_lazy("Standing charge"),
    LedgerTransaction.Kind.REVERSAL: gettext_lazy("Reversal"),
    LedgerTransaction.Kind.ADJUSTMENT: gettext_lazy("Adjustment"),
    LedgerTransaction.Kind.REFUND: gettext_lazy("Refund"),
    LedgerTransaction.Kind.REFUND_PAYOUT: gettext_lazy("Refund paid out"),
    LedgerTransaction.Kind.DEPOSIT: gettext_lazy("Deposit received"),
    LedgerTransaction.Kind.DEPOSIT_RELEASE: gettext_lazy("Deposit returned to the wallet"),
    LedgerTransaction.Kind.DEBT_TRANSFER: gettext_lazy("Debt moved to debtors"),
}
UTILITY_LABELS = {
    Meter.Utility.ELECTRICITY: gettext_lazy("Electricity"),
    Meter.Utility.WATER: gettext_lazy("Water"),
}
MODE_LABELS = {
    Account.Mode.PREPAID: gettext_lazy("Prepaid"),
    Account.Mode.POSTPAID: gettext_lazy("Postpaid"),
}


def _render(
    request: HttpRequest, template: str, context: dict, *, partial: str, invalid: bool = False
) -> HttpResponse:
    """The page, or its `partial` for htmx. A refused form is a 400, except to htmx, which
    swaps only successful answers."""
    if request.htmx:
        return render(request, f"{template}#{partial}", context)
    return render(request, template, context, status=400 if invalid else 200)


def _done(request: HttpRequest, destination: str) -> HttpResponse:
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = destination
        return response
    return redirect(destination)


def _form_errors(form, error: ValidationError) -> None:
    """A service's refusal, shown beside the fields it names and above the form otherwise."""
    named = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
    for field, problems in named.items():
        form.add_error(field if field in form.fields else None, problems)


def _with_last_reading(meters):
    latest = Reading.objects.filter(meter=OuterRef("pk")).exclude(status=Reading.Status.REJECTED)
    latest = latest.order_by("-taken_at")
    return meters.annotate(
        last_register=Subquery(latest.values("register")[:1]),
        last_taken_at=Subquery(latest.values("taken_at")[:1]),
    )


def _meters_in_service(unit: Unit) -> list[Meter]:
    return list(
        _with_last_reading(
            Meter.objects.filter(unit=unit, removed_at__isnull=True).select_related(
                "unit__property", "gateway", "profile"
            )
        ).order_by("utility", "serial")
    )


def _last(meters: list[Meter]) -> dict[int, tuple]:
    return {
        meter.pk: (meter.last_register, meter.last_taken_at)
        for meter in meters
        if meter.last_register is not None
    }


# Move-in -----------------------------------------------------------------------------------------


@staff_view(read=Capability.OPERATE)
@require_http_methods(["GET", "POST"])
def move_in(request: HttpRequest, unit_id) -> HttpResponse:
    unit = scoped_or_404(Unit.objects.select_related("property"), request.scope, uuid=unit_id)
    occupant = (
        Account.objects.filter(unit=unit, status=Account.Status.OPEN)
        .select_related("tenant")
        .first()
    )
    meters = _meters_in_service(unit)
    # Coming from a tenant's page (?tenant=<uuid>), that tenant is the one chosen.
    chosen = request.GET.get("tenant")
    initial = {"tenant_choice": "existing", "tenant": chosen} if chosen else None
    form = MoveInForm(
        request.POST if request.method == "POST" else None,
        scope=request.scope,
        meters=meters,
        last=_last(meters),
        initial=initial,
    )
    context = {"unit": unit, "property": unit.property, "occupant": occupant, "form": form}
    if request.method == "GET":
        return _render(request, "accounts/move_in.html", context, partial="form")
    if form.is_valid():
        data = form.cleaned_data
        try:
            result = lifecycle.move_in(
                unit=unit,
                actor=request.user,
                idempotency_key=str(data["idempotency_key"]),
                tenant=form.existing_tenant(),
                new_tenant=form.new_tenant(),
                mode=data["mode"],
                protected=data["protected"],
                opening_readings=form.readings(),
                deposit=data["deposit_amount"],
                deposit_channel=data["deposit_channel"],
                topup=data["topup_amount"],
                topup_channel=data["topup_channel"],
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            if result.created:
                messages.success(
                    request,
                    _("%(tenant)s moved in to %(unit)s.")
                    % {"tenant": result.account.tenant.name, "unit": unit.name},
                )
            return _done(request, reverse("accounts:account", args=[result.account.uuid]))
    return _render(request, "accounts/move_in.html", context, partial="form", invalid=True)


# The tenancy and the tenant ----------------------------------------------------------------------


def _tenancy_meters(request: HttpRequest, account: Account) -> list[Meter]:
    """The meters that served the unit during the tenancy, with their last readings."""
    served = Meter.objects.for_scope(request.scope).filter(unit=account.unit)
    if account.closed_at is not None:
        served = served.filter(installed_at__lt=account.closed_at)
    served = served.filter(Q(removed_at__isnull=True) | Q(removed_at__gt=account.opened_at))
    return list(_with_last_reading(served).order_by("utility", "-installed_at"))


def _summary_context(account: Account) -> dict:
    days_left = None
    if account.status == Account.Status.OPEN and account.mode == Account.Mode.PREPAID:
        days_left = days_of_credit_left(accounts=[account])[account.pk]
    return {
        "account": account,
        "balance": account.wallet.balance,
        "currency": account.wallet.currency,
        "days_left": days_left,
        "mode_label": MODE_LABELS[account.mode],
        "poll_seconds": SUMMARY_POLL_SECONDS,
    }


@staff_view
def account_detail(request: HttpRequest, account_id) -> HttpResponse:
    account = scoped_or_404(
        Account.objects.select_related("tenant", "unit__property", "wallet"),
        request.scope,
        uuid=account_id,
    )
    context = _summary_context(account)
    if request.htmx and request.GET.get("part") == "summary":
        return render(request, "accounts/account_detail.html#summary", context)
    postings = (
        Posting.objects.filter(ledger_account_id=account.wallet_id)
        .select_related("transaction")
        .order_by("-transaction__created_at", "-pk")[:RECENT_TRANSACTIONS]
    )
    context.update(
        property=account.unit.property,
        meters=[
            (meter, UTILITY_LABELS[meter.utility], meter.removed_at is None)
            for meter in _tenancy_meters(request, account)
        ],
        transactions=[
            (posting, TRANSACTION_LABELS.get(posting.transaction.kind, posting.transaction.kind))
            for posting in postings
        ],
        receipts=[
            (receipt, CHANNEL_LABELS.get(receipt.channel, receipt.channel))
            for receipt in Receipt.objects.filter(account=account)
            .select_related("property")
            .order_by("-issued_at", "-pk")[:RECENT_RECEIPTS]
        ],
        deposit=deposit_of(account=account),
        can_operate=request.scope.can(Capability.OPERATE),
        is_open=account.status == Account.Status.OPEN,
    )
    return render(request, "accounts/account_detail.html", context)


@staff_view
def tenant_detail(request: HttpRequest, tenant_id) -> HttpResponse:
    tenant = scoped_or_404(Tenant, request.scope, uuid=tenant_id)
    tenancies = (
        Account.objects.for_scope(request.scope)
        .filter(tenant=tenant)
        .select_related("unit__property", "wallet")
        .order_by("-opened_at")
    )
    context = {
        "tenant": tenant,
        "tenancies": [(account, MODE_LABELS[account.mode]) for account in tenancies],
    }
    return render(request, "accounts/tenant_detail.html", context)


# Move-out ----------------------------------------------------------------------------------------


def _read_meters(meters: list[Meter], data) -> dict[str, tuple[str, bool]]:
    """Read every meter on demand; each value read goes into `data`. Returns, by field name,
    what happened: the value read, or why the meter could not be read."""
    notes = {}
    for meter in meters:
        try:
            reading = lifecycle.meter_read_now(meter=meter)
        except MeterReadFailed as failure:
            notes[reading_key(meter)] = (
                _("%(reason)s Enter the reading by hand.") % {"reason": failure},
                False,
            )
            continue
        register = register_text(reading.register)
        data[reading_key(meter)] = str(register)
        notes[reading_key(meter)] = (
            _("Read from the meter: %(register)s.") % {"register": register},
            True,
        )
    return notes


def _reading_rows(form, meters: list[Meter], notes: dict) -> list[tuple]:
    return [(form[reading_key(meter)], notes.get(reading_key(meter))) for meter in meters]


def _carry(data, names, **values) -> list[tuple[str, str]]:
    """Hidden inputs that take values entered at an earlier step on to the next one."""
    carried = {name: data.get(name, "") for name in names}
    carried.update(values)
    return [(name, str(value)) for name, value in carried.items() if value not in (None, "")]


@staff_view(read=Capability.OPERATE)
@require_http_methods(["GET", "POST"])
def move_out(request: HttpRequest, account_id) -> HttpResponse:
    """The final readings (entered, or read from the meters), then the settlement statement as
    a preview, then the confirmation that settles and closes at the preview's moment."""
    account = scoped_or_404(
        Account.objects.select_related("tenant", "unit__property", "wallet"),
        request.scope,
        uuid=account_id,
    )
    settled_url = reverse("accounts:settlement", args=[account.uuid])
    action = request.POST.get("action", "preview") if request.method == "POST" else "edit"
    # A confirmation replayed after the close still goes to the service, which answers it.
    if account.status != Account.Status.OPEN and action != "confirm":
        return _done(request, settled_url)
    meters = _meters_in_service(account.unit)
    last = _last(meters)
    context = {
        "account": account,
        "property": account.unit.property,
        "step": "form",
        **_summary_context(account),
    }
    if action in ("edit", "read"):
        data = request.POST.copy() if request.method == "POST" else None
        notes = _read_meters(meters, data) if action == "read" else {}
        initial = {name: data.get(name) for name in data} if data is not None else None
        form = MoveOutForm(meters=meters, last=last, initial=initial)
        context.update(form=form, reading_rows=_reading_rows(form, meters, notes))
        return _render(request, "accounts/move_out.html", context, partial="step")
    form = MoveOutForm(request.POST, meters=meters, last=last)
    context.update(form=form, reading_rows=_reading_rows(form, meters, {}))
    if not form.is_valid():
        return _render(request, "accounts/move_out.html", context, partial="step", invalid=True)
    data = form.cleaned_data
    move = {
        "account": account,
        "actor": request.user,
        "idempotency_key": str(data["idempotency_key"]),
        "final_readings": form.readings(),
        "refund_channel": data["refund_channel"],
        "reason": data["reason"],
    }
    try:
        if action == "confirm":
            if data["moved_out_at"] is None:
                raise ValidationError(_("Preview the settlement before confirming it."))
            result = lifecycle.move_out(**move, moved_out_at=data["moved_out_at"])
            if result.created:
                messages.success(request, _("The tenancy has ended and the account is closed."))
            return _done(request, settled_url)
        moment = timezone.now().replace(microsecond=0)
        statement = lifecycle.move_out_preview(**move, moved_out_at=moment)
    except ValidationError as error:
        _form_errors(form, error)
        return _render(request, "accounts/move_out.html", context, partial="step", invalid=True)
    names = ["idempotency_key", "refund_channel", "reason", *(reading_key(m) for m in meters)]
    context.update(
        _statement_context(statement),
        step="preview",
        carry=_carry(request.POST, names, moved_out_at=moment.isoformat()),
    )
    return _render(request, "accounts/move_out.html", context, partial="step")


def _statement_context(statement: SettlementStatement) -> dict:
    """The statement with its rows and notes in the reader's language."""
    return {
        "statement": statement,
        "rows": statement_rows(statement),
        "notes": statement_notes(statement, lambda amount: money(amount, statement.currency)),
    }


def _tenancy(request: HttpRequest, account_id) -> Account:
    return scoped_or_404(
        Account.objects.select_related("tenant", "unit__property", "wallet"),
        request.scope,
        uuid=account_id,
    )


@staff_view
def settlement(request: HttpRequest, account_id) -> HttpResponse:
    """The printable settlement statement of an ended tenancy."""
    account = _tenancy(request, account_id)
    if account.status == Account.Status.OPEN:
        return redirect("accounts:account", account_id=account.uuid)
    context = {
        **_statement_context(settlement_statement(account=account)),
        "account": account,
        "tenant_language": language_for(account.tenant.preferred_language),
        "pdf_languages": LANGUAGES,
    }
    return render(request, "accounts/settlement.html", context)


@staff_view
def settlement_pdf(request: HttpRequest, account_id) -> HttpResponse:
    """The statement as a PDF, in the tenant's language unless `?language=` asks for another."""
    account = _tenancy(request, account_id)
    if account.status == Account.Status.OPEN:
        raise Http404("The tenancy has not ended.")
    statement = settlement_statement(account=account)
    language = request.GET.get("language", "")
    if language not in LANGUAGES:
        language = language_for(statement.tenant_language)
    response = HttpResponse(
        render_pdf(statement=statement, language=language), content_type=PDF_MIMETYPE
    )
    filename = settlement_filename(statement=statement)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


# Meter replacement -------------------------------------------------------------------------------

WIZARD_FIELDS = {1: STEP_ONE, 2: STEP_TWO, 3: ()}


def _error_step(form) -> int:
    """The first step whose fields have errors (3, the confirmation, for the rest)."""
    for step in (1, 2):
        if any(name in form.errors for name in WIZARD_FIELDS[step]):
            return step
    return 3


def _wizard(request, context, step: int, form, *, invalid: bool = False) -> HttpResponse:
    shown = set(WIZARD_FIELDS[step])
    hidden = [name for name in (*STEP_ONE, *STEP_TWO) if name not in shown]
    context.update(step=step, form=form, carry=_carry(request.POST, hidden))
    return _render(
        request, "accounts/meter_replace.html", context, partial="wizard", invalid=invalid
    )


@staff_view(read=Capability.OPERATE)
@require_http_methods(["GET", "POST"])
def meter_replace(request: HttpRequest, meter_id) -> HttpResponse:
    """Step 1 the old meter's final reading, step 2 the new meter, step 3 the confirmation.

    Each step posts everything entered so far; "back" shows an earlier step as it was left."""
    meter = scoped_or_404(
        Meter.objects.select_related("unit__property", "profile", "gateway", "mqtt_device"),
        request.scope,
        uuid=meter_id,
    )
    occupant = None
    if meter.unit_id is not None:
        occupant = Account.objects.filter(unit=meter.unit, status=Account.Status.OPEN).first()
    in_service = meter.unit_id is not None and meter.removed_at is None
    action = request.POST.get("action", "step1") if request.method == "POST" else "start"
    context = {
        "meter": meter,
        "occupant": occupant,
        "in_service": in_service,
        "read_note": None,
        "utility_label": UTILITY_LABELS[meter.utility],
    }
    scope = request.scope
    if not in_service and action != "confirm":
        return _wizard(request, context, 1, None)
    if action == "start":
        return _wizard(request, context, 1, MeterReplaceForm(scope=scope, meter=meter, step=1))
    if action in ("step1", "read", "back2"):
        data = request.POST.copy()
        if action == "read":
            try:
                reading = lifecycle.meter_read_now(meter=meter)
            except MeterReadFailed as failure:
                note = _("%(reason)s Enter the reading by hand.") % {"reason": failure}
                context["read_note"] = (note, False)
            else:
                register = register_text(reading.register)
                data["final_register"] = str(register)
                note = _("Read from the meter: %(register)s.") % {"register": register}
                context["read_note"] = (note, True)
        step = 2 if action == "back2" else 1
        initial = {name: data.get(name) for name in data}
        form = MeterReplaceForm(scope=scope, meter=meter, step=step, initial=initial)
        return _wizard(request, context, step, form)
    # "step2" submits step 1; "step3" and "confirm" submit everything.
    step = 1 if action == "step2" else 3
    form = MeterReplaceForm(request.POST, scope=scope, meter=meter, step=step)
    if not form.is_valid():
        return _wizard(request, context, _error_step(form), form, invalid=True)
    if action == "step2":
        initial = {name: request.POST.get(name) for name in request.POST}
        initial.setdefault("keep_connection", "yes")
        return _wizard(
            request, context, 2, MeterReplaceForm(scope=scope, meter=meter, initial=initial)
        )
    data = form.cleaned_data
    context["profile"] = data["profile"] or meter.profile
    if action == "confirm":
        try:
            swap = lifecycle.meter_swap(
                meter=meter,
                actor=request.user,
                idempotency_key=str(data["idempotency_key"]),
                final_register=data["final_register"],
                new_serial=data["new_serial"],
                initial_register=data["initial_register"],
                profile=data["profile"],
                keep_connection=data["keep_connection"],
            )
        except ValidationError as error:
            _form_errors(form, error)
            return _wizard(request, context, _error_step(form), form, invalid=True)
        if swap.created:
            messages.success(
                request,
                _("Meter %(old)s was replaced by %(new)s.")
                % {"old": swap.old.serial, "new": swap.new.serial},
            )
        if occupant is not None:
            return _done(request, reverse("accounts:account", args=[occupant.uuid]))
        return _done(request, reverse("meters:detail", args=[swap.new.uuid]))
    return _wizard(request, context, 3, form)


urlpatterns = [
    path("units/<uuid:unit_id>/move-in/", move_in, name="move-in"),
    path("tenancies/<uuid:account_id>/", account_detail, name="account"),
    path("tenancies/<uuid:account_id>/move-out/", move_out, name="move-out"),
    path("tenancies/<uuid:account_id>/settlement/", settlement, name="settlement"),
    path("tenancies/<uuid:account_id>/settlement.pdf", settlement_pdf, name="settlement-pdf"),
    path("tenants/<uuid:tenant_id>/", tenant_detail, name="tenant"),
    path("meters/<uuid:meter_id>/replace/", meter_replace, name="meter-replace"),
]

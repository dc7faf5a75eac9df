"""The tenant portal's pages. Each page is also the source of its own htmx partials: the same
view answers with the whole page, or with one named part of it when htmx asks for it."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from billing.receipts import receipt_filename, receipt_html, receipt_language, receipt_pdf
from payments.autotopup import autotopup_disable, autotopup_enable, autotopup_setup_start
from payments.models import PaymentIntent
from payments.selectors import provider_webhook_url
from payments.services import PaymentError, checkout_amount_check, intent_create
from portal import selectors
from portal.access import tenant_required
from portal.forms import AmountForm, AutoTopupForm, ChannelsForm, LanguageForm
from portal.qr import qr_svg
from portal.services import portal_channels_set, portal_language_set, portal_password_change

# While a payment or a relay is still settling, the pages ask this often (seconds).
LIVE_POLL_SECONDS = 2
HOME_POLL_SECONDS = 20


def _page(request: HttpRequest, template: str, context: dict, partial: str | None = None):
    """The whole page, or only `partial` of it when htmx asks for that part."""
    if partial and request.htmx:
        return render(request, f"{template}#{partial}", context)
    return render(request, template, context)


@tenant_required
def index(request: HttpRequest) -> HttpResponse:
    accounts = list(selectors.portal_accounts(user=request.user))
    open_accounts = [account for account in accounts if account.status == account.Status.OPEN]
    if len(open_accounts) == 1:
        return redirect("portal:home", account_uuid=open_accounts[0].uuid)
    return render(request, "portal/index.html", {"accounts": accounts})


def _live_context(account) -> dict:
    live = selectors.live_state(account=account)
    return {"account": account, "live": live}


@tenant_required
def home(request: HttpRequest, account_uuid) -> HttpResponse:
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    context = _live_context(account)
    if request.htmx and request.GET.get("part") == "live":
        context["poll_seconds"] = HOME_POLL_SECONDS
        return render(request, "portal/home.html#live", context)
    utilities = selectors.metered_utilities(account=account)
    utility = utilities[0] if utilities else None
    context.update(
        poll_seconds=HOME_POLL_SECONDS,
        warnings=selectors.warnings_for(account=account, live=context["live"]),
        run_out=selectors.run_out(account=account, live=context["live"]),
        messages_unread=selectors.unread_messages(user=request.user),
        tariffs=selectors.tariffs_now(account=account),
        utilities=utilities,
        usage=selectors.usage(account=account, period=selectors.UsagePeriod.DAY, utility=utility)
        if utility
        else None,
        periods=list(selectors.UsagePeriod),
        card_payments=selectors.PayChannel.CARD
        in selectors.channels_for(selectors.online_configs(account=account)),
    )
    return render(request, "portal/home.html", context)


@tenant_required
def usage(request: HttpRequest, account_uuid) -> HttpResponse:
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    utilities = selectors.metered_utilities(account=account)
    try:
        period = selectors.UsagePeriod(request.GET.get("period", "day"))
    except ValueError:
        raise Http404 from None
    utility = request.GET.get("utility") or (utilities[0] if utilities else "")
    if utility not in utilities:
        raise Http404
    context = {
        "account": account,
        "usage": selectors.usage(account=account, period=period, utility=utility),
        "utilities": utilities,
        "periods": list(selectors.UsagePeriod),
    }
    if request.htmx:
        return render(request, "portal/usage.html#chart", context)
    context["carbon"] = selectors.carbon_by_month(account=account)
    return render(request, "portal/usage.html", context)


def _notify_url(request: HttpRequest, config) -> str:
    return provider_webhook_url(config=config, base=request.build_absolute_uri("/"))


def _return_url(request: HttpRequest) -> str:
    # Both reverse() and build_absolute_uri() escape the braces of the placeholder that
    # intent_create fills in.
    url = request.build_absolute_uri(reverse("portal:payment", args=["{reference}"]))
    return url.replace("%7B", "{").replace("%7D", "}")


def _client(request: HttpRequest) -> str:
    agent = request.headers.get("User-Agent", "")
    phone = any(word in agent for word in ("Mobile", "Android", "iPhone", "MicroMessenger"))
    return PaymentIntent.Client.MOBILE if phone else PaymentIntent.Client.DESKTOP


@tenant_required
@require_http_methods(["GET", "POST"])
def recharge(request: HttpRequest, account_uuid) -> HttpResponse:
    """Amount, then channel, then provider: each step posts back here with what came before."""
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    if account.status != account.Status.OPEN:
        raise Http404
    offered = selectors.channels_for(selectors.online_configs(account=account))
    context = {
        "account": account,
        "live": selectors.live_state(account=account),
        "presets": selectors.PRESETS,
        "offered": offered,
        "step": "amount",
    }
    if request.method == "GET":
        context["form"] = AmountForm()
        return render(request, "portal/recharge.html", context)
    data = request.POST.copy()
    # A preset button carries the amount under its own name, so an empty custom field posted
    # beside it does not hide it.
    if data.get("preset"):
        data["amount"] = data["preset"]
    form = AmountForm(data)
    context["form"] = form
    if not form.is_valid():
        return _page(request, "portal/recharge.html", context, partial="step")
    try:
        amount = checkout_amount_check(account=account, amount=form.cleaned_data["amount"])
    except PaymentError as error:
        for message in error.messages:
            form.add_error("amount", message)
        return _page(request, "portal/recharge.html", context, partial="step")
    context.update(amount=amount, step="channel")
    channel = request.POST.get("channel", "")
    if not channel:
        return _page(request, "portal/recharge.html", context, partial="step")
    try:
        configs = offered[selectors.PayChannel(channel)]
    except (ValueError, KeyError):
        form.add_error(None, _("Choose one of the ways to pay shown."))
        return _page(request, "portal/recharge.html", context, partial="step")
    context.update(channel=channel, configs=configs, step="provider")
    chosen = request.POST.get("provider", "")
    config = next((config for config in configs if str(config.uuid) == chosen), None)
    if config is None or "pay" not in request.POST:
        if len(configs) == 1:
            context.update(config=configs[0], step="confirm")
        return _page(request, "portal/recharge.html", context, partial="step")
    try:
        intent = intent_create(
            account=account,
            config=config,
            amount=amount,
            actor=request.user,
            notify_url=_notify_url(request, config),
            return_url=_return_url(request),
            client=_client(request),
            client_ip=request.META.get("REMOTE_ADDR", "127.0.0.1"),
        )
    except (PaymentError, ValidationError) as error:
        form.add_error(None, " ".join(error.messages))
        context.update(config=config, step="confirm")
        return _page(request, "portal/recharge.html", context, partial="step")
    return _to_checkout(request, intent)


@tenant_required
def payment(request: HttpRequest, reference: str) -> HttpResponse:
    """Where the provider sends the payer back: the result as it arrives, with the balance and
    the supply, without a reload."""
    intent = selectors.portal_intent(user=request.user, reference=reference)
    account = intent.account
    context = _live_context(account)
    settled = intent.status not in (PaymentIntent.Status.CREATED, PaymentIntent.Status.PENDING)
    supply_settling = context["live"].relay in (
        selectors.RelayState.PENDING,
        selectors.RelayState.OFF,
    )
    recent = timezone.now() - intent.updated_at < selectors.SETTLING
    context.update(
        intent=intent,
        settled=settled,
        # Keep asking until the payment is settled and the supply has caught up, for a while.
        polling=not settled or (intent.is_credited() and supply_settling and recent),
        poll_seconds=LIVE_POLL_SECONDS,
        qr=qr_svg(intent.qr_code) if intent.qr_code and not settled else "",
    )
    return _page(request, "portal/payment.html", context, partial="status")


def _initial(topup) -> dict:
    if topup is None:
        return {"threshold": 20, "amount": 50, "monthly_cap": 200}
    return {name: getattr(topup, name) for name in ("threshold", "amount", "monthly_cap")}


def _to_checkout(request: HttpRequest, intent: PaymentIntent) -> HttpResponse:
    destination = intent.redirect_url or reverse("portal:payment", args=[intent.reference])
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


def _autotopup_turn_on(request: HttpRequest, account, config, amounts: dict) -> HttpResponse:
    topup = autotopup_enable(account=account, config=config, actor=request.user, **amounts)
    if topup.payment_method_ref:
        messages.success(request, _("Auto top-up is on."))
        return redirect("portal:autotopup", account_uuid=account.uuid)
    # No card saved yet: the first recharge, now, saves it.
    intent = autotopup_setup_start(
        account=account,
        amount=topup.amount,
        actor=request.user,
        notify_url=_notify_url(request, topup.config),
        return_url=_return_url(request),
        client=_client(request),
        client_ip=request.META.get("REMOTE_ADDR", "127.0.0.1"),
    )
    return _to_checkout(request, intent)


@tenant_required
@require_http_methods(["GET", "POST"])
def autotopup(request: HttpRequest, account_uuid) -> HttpResponse:
    """Opt in to recharging a saved card automatically, or out again."""
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    cards = selectors.channels_for(selectors.online_configs(account=account)).get(
        selectors.PayChannel.CARD
    )
    if account.status != account.Status.OPEN or not cards:
        raise Http404
    topup = selectors.autotopup_of(account=account)
    form = AutoTopupForm(initial=_initial(topup))
    if request.method == "POST" and request.POST.get("action") == "disable":
        if topup is not None and topup.enabled:
            # Stored on the record, like the services' own reasons, so not in the reader's
            # language.
            reason = "Turned off by the tenant in the portal."
            autotopup_disable(account=account, actor=request.user, reason=reason)
            messages.success(request, _("Auto top-up is off."))
        return redirect("portal:autotopup", account_uuid=account.uuid)
    if request.method == "POST":
        form = AutoTopupForm(request.POST)
        if form.is_valid():
            try:
                return _autotopup_turn_on(request, account, cards[0], form.cleaned_data)
            except ValidationError as error:
                _form_errors(form, error)
    context = {
        "account": account,
        "topup": topup,
        "attempts": selectors.autotopup_attempts(topup=topup) if topup else [],
        "form": form,
    }
    return render(request, "portal/autotopup.html", context)


@tenant_required
def history(request: HttpRequest, account_uuid) -> HttpResponse:
    account = selectors.portal_account(user=request.user, account_uuid=account_uuid)
    tab = request.GET.get("tab", "topups")
    if tab not in ("topups", "days"):
        raise Http404
    source = (
        selectors.receipts_of(account=account)
        if tab == "topups"
        else selectors.days_of(account=account)
    )
    page = Paginator(source, 31).get_page(request.GET.get("page"))
    context = {
        "account": account,
        "tab": tab,
        "page": page,
        "payments": selectors.open_payments_of(account=account) if tab == "topups" else [],
    }
    return _page(request, "portal/history.html", context, partial="list")


@tenant_required
def receipt(request: HttpRequest, receipt_uuid) -> HttpResponse:
    found = selectors.portal_receipt(user=request.user, receipt_uuid=receipt_uuid)
    return HttpResponse(receipt_html(receipt=found, language=receipt_language(receipt=found)))


@tenant_required
def receipt_download(request: HttpRequest, receipt_uuid) -> HttpResponse:
    found = selectors.portal_receipt(user=request.user, receipt_uuid=receipt_uuid)
    pdf = receipt_pdf(receipt=found, language=receipt_language(receipt=found))
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{receipt_filename(receipt=found)}"'
    return response


@tenant_required
@require_http_methods(["GET", "POST"])
def settings_page(request: HttpRequest) -> HttpResponse:
    tenants = selectors.portal_tenants(user=request.user)
    first = tenants[0]
    language_form = LanguageForm(initial={"language": first.preferred_language})
    channel_forms = [ChannelsForm(tenant=tenant, prefix=str(tenant.uuid)) for tenant in tenants]
    password_form = PasswordChangeForm(request.user)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "language":
            language_form = LanguageForm(request.POST)
            if language_form.is_valid():
                language = language_form.cleaned_data["language"]
                portal_language_set(user=request.user, language=language)
                translation.activate(language)
                messages.success(request, _("Language saved."))
                response = redirect("portal:settings")
                response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language, samesite="Lax")
                return response
        elif action == "channels":
            channel_forms = [
                ChannelsForm(request.POST, tenant=tenant, prefix=str(tenant.uuid))
                for tenant in tenants
            ]
            if all(form.is_valid() for form in channel_forms):
                for form in channel_forms:
                    portal_channels_set(tenant=form.tenant, user=request.user, **form.cleaned_data)
                messages.success(request, _("Notification choices saved."))
                return redirect("portal:settings")
        elif action == "password":
            password_form = PasswordChangeForm(request.user, request.POST)
            if password_form.is_valid():
                user = portal_password_change(
                    user=request.user, password=password_form.cleaned_data["new_password1"]
                )
                update_session_auth_hash(request, user)
                messages.success(request, _("Password changed."))
                return redirect("portal:settings")
        else:
            raise Http404
    context = {
        "language_form": language_form,
        "channel_forms": channel_forms,
        "password_form": password_form,
        "accounts": list(selectors.portal_accounts(user=request.user)),
    }
    return render(request, "portal/settings.html", context)

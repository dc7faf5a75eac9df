"""The tariffs pages of the staff dashboard: the list, a tariff's versions, the editor for new
tariffs and versions (owners only), and the "what if" comparison of a version, or of a draft
from the editor, with what was actually charged over a past month.

Pages about one tariff run in the property's time zone, so the editor's "effective from" is
read and shown in local time.
"""

from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import Property
from meters.models import Meter
from prepaid.scoping import Capability
from prepaid.staff import require, scoped_or_404, staff_view
from tariffs import pricing, selectors, services
from tariffs.forms import TariffForm, VersionEditor, WhatIfForm
from tariffs.models import Tariff, TariffVersion
from tariffs.stored import pricing_version, stored_pricing_version
from tariffs.whatif import change_distribution

CURRENT_LABEL = _("From %(when)s (in force now)")
FROM_LABEL = _("From %(when)s")
TAKEN = _("A version already starts at that moment.")
KIND_NOT_SHOWN = _("The form shows the fields of another kind of tariff: update it first.")


def _tariff_or_404(request: HttpRequest, tariff_id) -> Tariff:
    try:
        return selectors.tariff_for_page(scope=request.scope, tariff_id=tariff_id)
    except Tariff.DoesNotExist:
        raise Http404("No tariff matches.") from None


def _done(request: HttpRequest, url: str) -> HttpResponse:
    """After a change: redirect (PRG), or tell htmx to load the page."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _editor_response(
    request: HttpRequest, template: str, context: dict, *, status: int = 200
) -> HttpResponse:
    # htmx only swaps successful responses, so an invalid htmx POST is a 200 with the errors.
    if request.htmx:
        return render(request, f"{template}#editor", context)
    return render(request, template, context, status=status)


@staff_view
def tariff_list(request: HttpRequest) -> HttpResponse:
    groups = selectors.tariffs_by_property(scope=request.scope)
    return render(request, "tariffs/list.html", {"groups": groups})


@staff_view
def tariff_detail(request: HttpRequest, tariff_id) -> HttpResponse:
    tariff = _tariff_or_404(request, tariff_id)
    with timezone.override(tariff.property.zone):
        context = {
            "tariff": tariff,
            "row": selectors.tariff_row(tariff=tariff),
            "consumers": selectors.tariff_consumers(scope=request.scope, tariff=tariff),
        }
        return render(request, "tariffs/detail.html", context)


def _next_local_midnight(tariff_property: Property):
    today = timezone.localtime(timezone.now(), tariff_property.zone).date()
    return pricing.local_midnight(today + timedelta(days=1), tariff_property.zone)


@staff_view
def tariff_create(request: HttpRequest, property_id) -> HttpResponse:
    """A property's tariff for a utility it has none for, with its first version, which may
    start in the past (readings waiting for a tariff are charged with it)."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    require(request, Capability.ADMINISTER)
    existing = {tariff.utility: tariff for tariff in prop.tariffs.all()}
    free = [utility for utility in Meter.Utility.values if utility not in existing]
    template = "tariffs/create.html"
    if request.method == "POST":
        twin = existing.get(request.POST.get("utility", ""))
        if twin is not None and twin.name == request.POST.get("name", "").strip():
            # The same form submitted twice: the first made the tariff.
            return _done(request, reverse("tariffs:detail", args=[twin.uuid]))
    if not free:
        return render(request, template, {"property": prop, "free": free})
    with timezone.override(prop.zone):
        context = {"property": prop, "free": free, "currency": prop.currency}
        if request.method != "POST":
            editor = VersionEditor.starting_from(None)
            editor.form.initial["effective_from"] = _next_local_midnight(prop)
            return render(
                request,
                template,
                _with_utility(context, TariffForm(free_utilities=free), editor, free[0]),
            )
        utility = request.POST.get("utility") if request.POST.get("utility") in free else free[0]
        action = VersionEditor.action(request.POST)
        if action != "save":
            form = TariffForm(free_utilities=free, initial=request.POST.dict())
            editor = VersionEditor.rearranged(request.POST, action)
            return _editor_response(
                request, template, _with_utility(context, form, editor, utility)
            )
        form = TariffForm(request.POST, free_utilities=free)
        editor = VersionEditor(request.POST)
        if all([form.is_valid(), editor.is_valid()]):
            try:
                tariff = services.tariff_create(
                    property=prop,
                    utility=form.cleaned_data["utility"],
                    name=form.cleaned_data["name"],
                    actor=request.user,
                    version={"effective_from": editor.effective_from, **editor.version_fields()},
                )
            except ValidationError as error:
                editor.add_service_error(error)
            else:
                return _done(request, reverse("tariffs:detail", args=[tariff.uuid]))
        return _editor_response(
            request, template, _with_utility(context, form, editor, utility), status=400
        )


def _with_utility(context: dict, form: TariffForm, editor: VersionEditor, utility: str) -> dict:
    return {
        **context,
        "form": form,
        "editor": editor,
        "utility": utility,
        "unit": Meter.REGISTER_UNITS[utility],
    }


@staff_view
def version_add(request: HttpRequest, tariff_id) -> HttpResponse:
    """New prices for a tariff from a moment on, which is not in the past: what was charged
    stays charged. The editor starts from the prices in force now."""
    tariff = _tariff_or_404(request, tariff_id)
    require(request, Capability.ADMINISTER)
    template = "tariffs/version_add.html"
    versions = list(tariff.versions.all())
    # A version "from now" submitted a moment late is still accepted, as the service does.
    earliest = timezone.now() - services.PAST_TOLERANCE
    months = _month_choices(tariff)
    with timezone.override(tariff.property.zone):
        context = {
            "tariff": tariff,
            "unit": Meter.REGISTER_UNITS[tariff.utility],
            "currency": tariff.property.currency,
            "what_if_form": WhatIfForm(
                months=months,
                prefix="what-if",
                initial={"month": request.POST.get("what-if-month")},
            ),
        }
        if request.method != "POST":
            current = selectors.versions_in_time(versions, timezone.now()).current
            editor = VersionEditor.starting_from(current or (versions[-1] if versions else None))
            editor.form.initial["effective_from"] = _next_local_midnight(tariff.property)
            return render(request, template, {**context, "editor": editor})
        action = VersionEditor.action(request.POST)
        if action != "save":
            editor = VersionEditor.rearranged(request.POST, action, earliest=earliest)
            return _editor_response(request, template, {**context, "editor": editor})
        editor = VersionEditor(request.POST, earliest=earliest)
        if editor.is_valid():
            same_start = {version.effective_from: version for version in versions}.get(
                editor.effective_from
            )
            if same_start is not None and _same_prices(same_start, editor.version_fields()):
                # The same form submitted twice: the first added the version.
                return _done(request, reverse("tariffs:detail", args=[tariff.uuid]))
            if same_start is not None:
                editor.form.add_error("effective_from", TAKEN)
            else:
                try:
                    services.tariff_version_add(
                        tariff=tariff,
                        actor=request.user,
                        effective_from=editor.effective_from,
                        **editor.version_fields(),
                    )
                except ValidationError as error:
                    editor.add_service_error(error)
                else:
                    return _done(request, reverse("tariffs:detail", args=[tariff.uuid]))
        return _editor_response(request, template, {**context, "editor": editor}, status=400)


def _same_prices(version: TariffVersion, fields: dict) -> bool:
    try:
        draft = pricing_version(effective_from=version.effective_from, **fields)
    except ValidationError:
        return False
    return draft == stored_pricing_version(version)


def _month_choices(tariff: Tariff) -> list[tuple[str, str]]:
    return [
        (month.isoformat()[:7], date_format(month, "YEAR_MONTH_FORMAT"))
        for month in selectors.past_months(prop=tariff.property)
    ]


def _month(value: str) -> date:
    return date.fromisoformat(f"{value}-01")


@staff_view
def what_if(request: HttpRequest, tariff_id) -> HttpResponse:
    """What a version would have charged each account over a past month, beside what was
    charged. GET compares one of the tariff's versions; POST compares a draft from the editor,
    which is not saved. Both only read, so anyone who may see the tariff and the charges may
    ask (VIEW)."""
    tariff = _tariff_or_404(request, tariff_id)
    versions = list(tariff.versions.all())
    months = _month_choices(tariff)
    with timezone.override(tariff.property.zone):
        current = selectors.versions_in_time(versions, timezone.now()).current
        choices = [(str(version.uuid), _version_label(version, current)) for version in versions]
        if request.method == "POST":
            context = _draft_what_if(request, tariff, months)
            context["form"] = WhatIfForm(
                months=months,
                versions=choices,
                initial={"month": request.POST.get("what-if-month"), "version": ""},
            )
        else:
            context = _version_what_if(request, tariff, versions, months, choices, current)
        context.update(tariff=tariff, months=months)
        if context.get("report") is not None:
            context["distribution"] = change_distribution(
                row.comparison for row in context["report"].rows
            )
        if request.htmx:
            return render(request, "tariffs/what_if.html#result", context)
        return render(request, "tariffs/what_if.html", context)


def _version_what_if(request, tariff, versions, months, choices, current) -> dict:
    default = {"month": months[0][0], "version": str(current.uuid) if current else ""}
    form = WhatIfForm(request.GET or None, months=months, versions=choices, initial=default)
    context: dict = {"form": form, "draft": False}
    if form.is_bound and not form.is_valid():
        context["problems"] = [str(m) for messages in form.errors.values() for m in messages]
        return context
    wanted = form.cleaned_data if form.is_bound else default
    version = {str(version.uuid): version for version in versions}.get(
        wanted.get("version") or default["version"]
    )
    if version is not None:
        context["version"] = version
        context["report"] = selectors.tariff_what_if(
            scope=request.scope,
            tariff=tariff,
            version=stored_pricing_version(version),
            month=_month(wanted["month"]),
        )
    return context


def _draft_what_if(request, tariff, months) -> dict:
    """The editor's draft, priced without saving; its problems instead when it has any."""
    form = WhatIfForm(request.POST, months=months, prefix="what-if")
    editor = VersionEditor(request.POST, require_start=False)
    context: dict = {"draft": True, "editor": editor}
    problems = [str(m) for messages in form.errors.values() for m in messages]
    if VersionEditor.action(request.POST) == "refresh":
        problems.append(str(KIND_NOT_SHOWN))
    elif not editor.is_valid():
        problems += editor.error_list()
    if not problems:
        try:
            version = pricing_version(effective_from=timezone.now(), **editor.version_fields())
        except ValidationError as error:
            problems += error.messages
        else:
            context["report"] = selectors.tariff_what_if(
                scope=request.scope,
                tariff=tariff,
                version=version,
                month=_month(form.cleaned_data["month"]),
            )
    context["problems"] = problems
    return context


def _version_label(version: TariffVersion, current: TariffVersion | None) -> str:
    when = date_format(timezone.localtime(version.effective_from), "DATETIME_FORMAT")
    if version == current:
        return CURRENT_LABEL % {"when": when}
    return FROM_LABEL % {"when": when}

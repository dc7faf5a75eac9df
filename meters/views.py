"""The staff dashboard's meter pages and alarms inbox.

Each page is also the source of its own htmx partials (`?part=live` and so on on the meter
page, the table on the lists): the same view, with the same access checks, answers with the
whole page or with the part htmx asks for.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from meters import alarms as alarm_services
from meters import selectors
from meters.forms import (
    AlarmAcknowledgeForm,
    AlarmFilterForm,
    AlarmResolveForm,
    MeterFilterForm,
    RelayAction,
    RelayForm,
)
from meters.models import Alarm, Meter
from meters.relay import relay_command_issue
from prepaid.scoping import Capability
from prepaid.staff import require, scoped_or_404, staff_view

# How often the live parts of the meter page ask again (seconds).
LIVE_POLL_SECONDS = 5
METERS_PER_PAGE = 50
READINGS_PER_PAGE = 25
ALARMS_PER_PAGE = 50


def _page(request: HttpRequest, template: str, context: dict, partial: str) -> HttpResponse:
    """The whole page, or only `partial` of it when htmx asks."""
    if request.htmx:
        return render(request, f"{template}#{partial}", context)
    return render(request, template, context)


# Meters ------------------------------------------------------------------------------------------


@staff_view
def meter_list(request: HttpRequest) -> HttpResponse:
    form = MeterFilterForm(request.GET, scope=request.scope)
    meters = selectors.meters_for_list(scope=request.scope, **form.filters())
    page = Paginator(meters, METERS_PER_PAGE).get_page(request.GET.get("page"))
    return _page(request, "meters/list.html", {"form": form, "page": page}, partial="table")


def _meter(request: HttpRequest, meter_id) -> Meter:
    return scoped_or_404(selectors.meter_page_queryset(), request.scope, uuid=meter_id)


def _live_context(request: HttpRequest, meter: Meter) -> dict:
    return {
        "latest": selectors.meter_latest_reading(meter=meter),
        "active_command": selectors.meter_active_command(meter=meter),
    }


def _commands_context(request: HttpRequest, meter: Meter) -> dict:
    return {"commands": selectors.meter_commands(meter=meter)}


def _chart_context(request: HttpRequest, meter: Meter) -> dict:
    try:
        period = selectors.ChartPeriod(request.GET.get("period", selectors.ChartPeriod.HOURS))
    except ValueError:
        period = selectors.ChartPeriod.HOURS
    consumption = selectors.meter_consumption(meter=meter, period=period)
    return {
        "period": period,
        "consumption": consumption,
        "chart_json": json.dumps(selectors.consumption_chart_data(consumption)),
    }


def _readings_context(request: HttpRequest, meter: Meter) -> dict:
    readings = selectors.meter_readings(meter=meter)
    return {"readings": Paginator(readings, READINGS_PER_PAGE).get_page(request.GET.get("page"))}


PARTS = {
    "live": _live_context,
    "commands": _commands_context,
    "chart": _chart_context,
    "readings": _readings_context,
}


def _base_context(request: HttpRequest, meter: Meter) -> dict:
    return {
        "meter": meter,
        "zone": selectors.meter_zone(meter),
        "poll_seconds": LIVE_POLL_SECONDS,
        "can_operate": request.scope.can(Capability.OPERATE),
    }


def _detail_context(request: HttpRequest, meter: Meter, **forms: RelayForm) -> dict:
    context = _base_context(request, meter)
    for part in PARTS.values():
        context.update(part(request, meter))
    scope = request.scope
    context.update(
        account=selectors.meter_open_account(scope=scope, meter=meter),
        rejections=selectors.meter_rejections(meter=meter),
        mqtt_rejections=selectors.meter_mqtt_rejections(meter=meter),
        alarms=selectors.meter_alarms(scope=scope, meter=meter),
    )
    if context["can_operate"] and meter.has_relay:
        context.update(
            cut_off_form=forms.get(RelayAction.CUT_OFF) or RelayForm(action=RelayAction.CUT_OFF),
            restore_form=forms.get(RelayAction.RESTORE) or RelayForm(action=RelayAction.RESTORE),
        )
    return context


@staff_view
def meter_detail(request: HttpRequest, meter_id) -> HttpResponse:
    meter = _meter(request, meter_id)
    part = request.GET.get("part", "")
    if request.htmx and part in PARTS:
        context = _base_context(request, meter) | PARTS[part](request, meter)
        return render(request, f"meters/detail.html#{part}", context)
    context = _detail_context(request, meter)
    context["open_dialog"] = request.GET.get("confirm", "")
    return render(request, "meters/detail.html", context)


def _relay_message(meter: Meter, *, restore: bool) -> str:
    if meter.online is False:
        if restore:
            return _(
                "The meter is offline: the restore is queued and is sent when the meter answers."
            )
        return _("The meter is offline: the cut-off is queued and is sent when the meter answers.")
    if restore:
        return _("Restore requested. Its progress shows under Relay commands.")
    return _("Cut-off requested. Its progress shows under Relay commands.")


@staff_view
@require_POST
def meter_relay(request: HttpRequest, meter_id) -> HttpResponse:
    """Cut off or restore the supply now, with a reason. The command is queued and executed by
    the commands queue; the page's live parts show it go from pending to confirmed (or fail)."""
    meter = _meter(request, meter_id)
    require(request, Capability.OPERATE)
    action = RelayForm.action_of(request.POST)
    form = RelayForm(request.POST, action=action)
    if form.is_valid():
        try:
            relay_command_issue(
                meter=meter,
                close=form.close,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                idempotency_key=f"relay-form:{form.cleaned_data['idempotency_key']}",
            )
        except ValidationError as error:
            form.add_error(None, error)
    if form.errors:
        if request.htmx:
            return render(request, "meters/_relay_form.html", {"meter": meter, "form": form})
        context = _detail_context(request, meter, **{action: form})
        context["open_dialog"] = action
        return render(request, "meters/detail.html", context, status=400)
    status = _relay_message(meter, restore=form.close)
    if not request.htmx:
        messages.success(request, status)
        return redirect("meters:detail", meter_id=meter.uuid)
    meter = _meter(request, meter_id)
    context = (
        _base_context(request, meter)
        | _live_context(request, meter)
        | _commands_context(request, meter)
        | {"oob": True, "relay_status": status}
    )
    response = HttpResponse(
        render_to_string(
            "meters/_relay_form.html",
            {"meter": meter, "form": RelayForm(action=action)},
            request=request,
        )
        + render_to_string("meters/detail.html#relay-status", context, request=request)
        + render_to_string("meters/detail.html#live", context, request=request)
        + render_to_string("meters/detail.html#commands", context, request=request)
    )
    response["HX-Trigger-After-Settle"] = "relay-issued"
    return response


# Alarms ------------------------------------------------------------------------------------------


@staff_view
def alarm_inbox(request: HttpRequest) -> HttpResponse:
    form = AlarmFilterForm(request.GET, scope=request.scope)
    alarms = selectors.alarms_for_inbox(scope=request.scope, **form.filters())
    page = Paginator(alarms, ALARMS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "form": form,
        "page": page,
        "can_operate": request.scope.can(Capability.OPERATE),
        "next": request.get_full_path(),
    }
    return _page(request, "meters/alarms.html", context, partial="table")


def _alarm(request: HttpRequest, alarm_id) -> Alarm:
    return scoped_or_404(selectors.alarm_row_queryset(), request.scope, uuid=alarm_id)


def _next_url(request: HttpRequest) -> str:
    next_url = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return reverse("meters:alarms")


def _alarm_answer(
    request: HttpRequest, alarm: Alarm, *, failed: str = "", form=None, done: str = ""
) -> HttpResponse:
    """The alarm's row for htmx; otherwise back where the form was, or, when the form was
    refused, a page with the row and its errors."""
    context = {
        "alarm": alarm,
        "can_operate": True,
        "next": request.POST.get("next", ""),
        "show_meter": request.POST.get("show_meter") != "0",
    }
    if failed:
        context[f"{failed}_form"] = form
    if request.htmx:
        return render(request, "meters/_alarm_row.html", context)
    if failed:
        return render(request, "meters/alarm_action.html", context, status=400)
    messages.success(request, done)
    return redirect(_next_url(request))


@staff_view
@require_POST
def alarm_acknowledge(request: HttpRequest, alarm_id) -> HttpResponse:
    """Someone is on it: the alarm stays open until it is resolved."""
    alarm = _alarm(request, alarm_id)
    require(request, Capability.OPERATE)
    form = AlarmAcknowledgeForm(request.POST)
    if form.is_valid():
        if alarm.closed_at is not None:
            form.add_error(None, _("This alarm is already resolved."))
        elif alarm.acknowledged_at is not None:
            form.add_error(None, _("This alarm was already acknowledged."))
    if form.errors:
        return _alarm_answer(request, alarm, failed="acknowledge", form=form)
    alarm_services.alarm_acknowledge(
        alarm=alarm, actor=request.user, note=form.cleaned_data["note"]
    )
    return _alarm_answer(request, _alarm(request, alarm_id), done=_("Alarm acknowledged."))


@staff_view
@require_POST
def alarm_resolve(request: HttpRequest, alarm_id) -> HttpResponse:
    """The cause is dealt with: the alarm closes, with a note of what was done."""
    alarm = _alarm(request, alarm_id)
    require(request, Capability.OPERATE)
    form = AlarmResolveForm(request.POST)
    if form.is_valid() and alarm.closed_at is not None:
        form.add_error(None, _("This alarm is already resolved."))
    if form.errors:
        return _alarm_answer(request, alarm, failed="resolve", form=form)
    alarm_services.alarm_resolve(alarm=alarm, actor=request.user, note=form.cleaned_data["note"])
    return _alarm_answer(request, _alarm(request, alarm_id), done=_("Alarm resolved."))

"""The staff dashboard's meter pages, alarms inbox, alarm page and detector settings.

Each page is also the source of its own htmx partials (`?part=live` and so on on the meter
page, the table on the lists): the same view, with the same access checks, answers with the
whole page or with the part htmx asks for.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Property
from meters import alarms as alarm_services
from meters import selectors, services
from meters.detection import SETTINGS_FIELDS, detector_settings, detector_settings_update
from meters.forms import (
    AlarmAcknowledgeForm,
    AlarmFilterForm,
    AlarmResolveForm,
    MeterFilterForm,
    MeterSettingsForm,
    RelayAction,
    RelayForm,
)
from meters.models import Alarm, DetectorSettings, Meter
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


def _detail_context(
    request: HttpRequest,
    meter: Meter,
    settings_form: MeterSettingsForm | None = None,
    **forms: RelayForm,
) -> dict:
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
    if context["can_operate"]:
        context["settings_form"] = settings_form or MeterSettingsForm(meter=meter)
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


@staff_view
@require_POST
def meter_settings(request: HttpRequest, meter_id) -> HttpResponse:
    """A meter's detector settings: its feeder, contracted power limit and whether it exports."""
    meter = _meter(request, meter_id)
    require(request, Capability.OPERATE)
    form = MeterSettingsForm(request.POST, meter=meter)
    if form.is_valid():
        changes = dict(form.cleaned_data)
        if form.fields["feeder"].disabled:
            del changes["feeder"]
        try:
            services.meter_update(meter=meter, actor=request.user, **changes)
        except ValidationError as error:
            form.add_error(None, error)
    if form.errors:
        context = _detail_context(request, _meter(request, meter_id), settings_form=form)
        return render(request, "meters/detail.html", context, status=400)
    messages.success(request, _("The meter's settings are saved."))
    return redirect("meters:detail", meter_id=meter.uuid)


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


# A detected alarm --------------------------------------------------------------------------------

SUGGESTED_ACTIONS = {
    Alarm.Action.INSPECT_BYPASS: gettext_lazy(
        "Inspect the meter and its wiring: the supply is cut off, yet the meter counts, so the "
        "relay may be bridged or stuck closed."
    ),
    Alarm.Action.INSPECT_TAMPER: gettext_lazy(
        "Visit the meter and check its cover, seals and terminals for tampering."
    ),
    Alarm.Action.CHECK_WIRING: gettext_lazy(
        "Check how the meter is connected: energy flows backwards through it, from reversed "
        "wiring or a generator that is not approved to export."
    ),
    Alarm.Action.ASK_TENANT: gettext_lazy(
        "Ask the tenant about the unusual consumption, and look for a fault or a leak."
    ),
    Alarm.Action.TEST_METER: gettext_lazy(
        "Test the meter, and replace it if it has failed: it counts nothing although the unit "
        "is occupied, has credit and is supplied. Check for a bypass too."
    ),
    Alarm.Action.REDUCE_LOAD: gettext_lazy(
        "Ask the tenant to reduce the load, or agree a higher contracted limit."
    ),
    Alarm.Action.FIND_LOSS: gettext_lazy(
        "Look for unmetered connections and faulty meters between the feeder and the meters "
        "it feeds."
    ),
}
SERIES_LABELS = {
    "consumption": gettext_lazy("Consumption"),
    "threshold": gettext_lazy("Spike threshold"),
    "power": gettext_lazy("Power"),
    "limit": gettext_lazy("Limit"),
    "flagged": gettext_lazy("Flag reported"),
    "exported": gettext_lazy("Export since the first"),
    "loss_percent": gettext_lazy("Loss"),
}
TRIP_OUTCOMES = {
    "tripped": gettext_lazy("The supply was cut off automatically."),
    "protected_period": gettext_lazy(
        "The supply was not cut off: it is a protected period. It is cut off after the period "
        "if the overload goes on."
    ),
    "protected_account": gettext_lazy(
        "The supply was not cut off: the account is protected from automatic cut-offs."
    ),
    "already_open": gettext_lazy("The supply was already cut off."),
}


def _number(value, places: int = 3) -> str:
    return formats.number_format(round(float(value), places), places, use_l10n=True)


def _when(seconds, zone: ZoneInfo) -> str:
    moment = timezone.localtime(datetime.fromtimestamp(seconds, UTC), zone)
    return formats.date_format(moment, "SHORT_DATETIME_FORMAT", use_l10n=True)


def rule_text(rule: dict, zone: ZoneInfo) -> str:
    """The rule that fired, with its figures, as a sentence in the active language."""
    name = rule.get("name")
    if name == "bypass":
        return _(
            "%(quantity)s %(unit)s was counted over %(readings)s readings while the relay was "
            "confirmed open, from %(since)s; up to %(tolerance)s %(unit)s is tolerated."
        ) % {
            "quantity": _number(rule["quantity"]),
            "unit": rule["unit"],
            "readings": rule["readings"],
            "since": _when(rule["open_since"], zone),
            "tolerance": _number(rule["tolerance"]),
        }
    if name in ("tamper_flag", "reverse_flag"):
        return _("The meter itself reported %(flags)s on %(readings)s readings in a row.") % {
            "flags": ", ".join(rule["flags"]),
            "readings": rule["readings"],
        }
    if name == "reverse_power":
        return _(
            "The power stayed below %(limit)s W on %(readings)s readings in a row, down to "
            "%(lowest)s W: energy flowed back through a meter that is not set to export."
        ) % {
            "limit": _number(rule["limit_w"], 0),
            "readings": rule["readings"],
            "lowest": _number(rule["lowest_w"], 0),
        }
    if name == "export":
        return _(
            "The export register counted %(quantity)s kWh; a meter that is not set to export "
            "may count up to %(tolerance)s kWh."
        ) % {"quantity": _number(rule["quantity"]), "tolerance": _number(rule["tolerance"])}
    if name == "spike":
        return _(
            "The hour from %(hour)s counted %(quantity)s %(unit)s. The median of that hour of "
            "the week over the %(weeks)s weeks before was %(median)s %(unit)s, and a spike is "
            "above %(k)s times the median and above %(minimum)s %(unit)s: %(threshold)s %(unit)s."
        ) % {
            "hour": _when(rule["hour"], zone),
            "quantity": _number(rule["quantity"]),
            "unit": rule["unit"],
            "weeks": rule["weeks"],
            "median": _number(rule["median"]),
            "k": _number(rule["k"], 2),
            "minimum": _number(rule["minimum"]),
            "threshold": _number(rule["threshold"]),
        }
    if name == "flatline":
        return _(
            "Nothing was counted for %(days)s days since %(since)s, while the unit was occupied, "
            "had credit and was supplied; the limit is %(limit)s days."
        ) % {
            "days": _number(rule["days"], 1),
            "since": _when(rule["since"], zone),
            "limit": rule["limit_days"],
        }
    if name == "overload":
        return _(
            "The power stayed above the limit of %(limit)s W for %(minutes)s minutes, up to "
            "%(peak)s W; an overload lasts at least %(limit_minutes)s minutes."
        ) % {
            "limit": _number(rule["limit_w"], 0),
            "minutes": rule["minutes"],
            "peak": _number(rule["peak_w"], 0),
            "limit_minutes": rule["limit_minutes"],
        }
    if name == "loss":
        return _(
            "On %(day)s the feeder measured %(feeder)s %(unit)s and the meters it feeds "
            "%(fed)s %(unit)s together: %(loss)s %(unit)s or %(percent)s%% was lost, above the "
            "threshold of %(limit)s%%."
        ) % {
            "day": formats.date_format(date.fromisoformat(rule["day"]), "SHORT_DATE_FORMAT"),
            "feeder": _number(rule["feeder"]),
            "fed": _number(rule["fed"]),
            "loss": _number(rule["loss"]),
            "unit": rule["unit"],
            "percent": _number(rule["percent"], 1),
            "limit": _number(rule["limit_percent"], 1),
        }
    return ""


def _chart(evidence: dict, zone: ZoneInfo) -> tuple[str, list]:
    """The evidence chart for alarm-chart.js (labels translated), and its figures as table rows
    (local time, then each series' value)."""
    chart = evidence.get("chart") or {}
    x = chart.get("x") or []
    if not x:
        return "", []
    series = [
        {
            "label": str(SERIES_LABELS.get(line["key"], line["key"])),
            "values": line["values"],
            "limit": index > 0,
        }
        for index, line in enumerate(chart.get("series", []))
    ]
    data = {
        "x": x,
        "series": series,
        "unit": chart.get("unit", ""),
        "style": chart.get("style", "bars"),
        "band": chart.get("band"),
        "zone": str(zone),
        "timeLabel": _("Time"),
    }
    rows = [
        (_when(moment, zone), [line["values"][index] for line in series])
        for index, moment in enumerate(x)
    ]
    return json.dumps(data), rows


@staff_view
def alarm_detail(request: HttpRequest, alarm_id) -> HttpResponse:
    """One alarm: what fired and why, the evidence as a chart, what to do, and acknowledging
    and resolving it."""
    alarm = _alarm(request, alarm_id)
    zone = ZoneInfo(alarm.property.time_zone if alarm.property_id else "UTC")
    evidence = alarm.evidence or {}
    chart_json, chart_rows = _chart(evidence, zone)
    trip = evidence.get("trip") or {}
    context = {
        "alarm": alarm,
        "zone": zone,
        "rule_text": rule_text(evidence.get("rule") or {}, zone),
        "suggested_action": SUGGESTED_ACTIONS.get(alarm.suggested_action, ""),
        "chart_json": chart_json,
        "chart_rows": chart_rows,
        "series_labels": [line["label"] for line in json.loads(chart_json)["series"]]
        if chart_json
        else [],
        "unit": (evidence.get("chart") or {}).get("unit", ""),
        "occurrences": evidence.get("occurrences", 1),
        "trip": TRIP_OUTCOMES.get(trip.get("outcome"), ""),
        "can_operate": request.scope.can(Capability.OPERATE),
        "next": request.get_full_path(),
    }
    return render(request, "meters/alarm_detail.html", context)


# Detector settings -------------------------------------------------------------------------------


class DetectorSettingsForm(forms.ModelForm):
    """A property's detector rules; the main meter is one of its meters in service."""

    class Meta:
        model = DetectorSettings
        fields = SETTINGS_FIELDS
        labels = {
            "max_gap_minutes": gettext_lazy("Longest gap between readings (minutes)"),
            "bypass_enabled": gettext_lazy("Watch for consumption while cut off"),
            "bypass_tolerance": gettext_lazy("Tolerated consumption while cut off"),
            "tamper_enabled": gettext_lazy("Watch for tamper and reverse signals"),
            "reverse_power_w": gettext_lazy("Reverse power threshold (W)"),
            "export_tolerance": gettext_lazy("Tolerated export (kWh)"),
            "spike_enabled": gettext_lazy("Watch for consumption spikes"),
            "spike_k": gettext_lazy("Spike factor k"),
            "spike_minimum": gettext_lazy("Smallest spike"),
            "spike_weeks": gettext_lazy("Weeks of history for the median"),
            "spike_min_weeks": gettext_lazy("Weeks of history needed"),
            "flatline_enabled": gettext_lazy("Watch for meters that count nothing"),
            "flatline_days": gettext_lazy("Days without consumption"),
            "overload_enabled": gettext_lazy("Watch for overloads"),
            "overload_limit_source": gettext_lazy("Power limit"),
            "overload_limit_w": gettext_lazy("Property's power limit (W)"),
            "overload_minutes": gettext_lazy("Minutes above the limit"),
            "overload_trip": gettext_lazy("Cut off an overloaded supply automatically"),
            "loss_enabled": gettext_lazy("Watch for losses"),
            "loss_percent": gettext_lazy("Loss threshold (%)"),
            "loss_minimum": gettext_lazy("Smallest feeder day judged"),
            "main_meter": gettext_lazy("Main meter"),
        }
        help_texts = {
            "max_gap_minutes": gettext_lazy(
                "Consumption across a longer gap is known in total but not when it happened, so "
                "no hour it crosses is judged."
            ),
            "bypass_tolerance": gettext_lazy("In kWh, or m³ for water meters."),
            "reverse_power_w": gettext_lazy(
                "Power below minus this on consecutive readings means energy flows backwards."
            ),
            "spike_k": gettext_lazy(
                "An hour above k times the account's median for that hour of the week is a spike."
            ),
            "spike_minimum": gettext_lazy(
                "In kWh, or m³ for water meters: a smaller hour is never a spike."
            ),
            "spike_min_weeks": gettext_lazy(
                "With less history for an hour, it is not judged (a new tenant, a new meter)."
            ),
            "flatline_days": gettext_lazy(
                "Only on a unit that is occupied, has credit and is supplied."
            ),
            "overload_limit_source": gettext_lazy(
                "A meter's contracted limit is set on the meter."
            ),
            "overload_trip": gettext_lazy(
                "Under the cut-off rules: never in a protected period of the balance policy and "
                "never for a protected account."
            ),
            "loss_percent": gettext_lazy(
                "A feeder losing more than this share of what it measured, against the meters "
                "it feeds, raises an alarm."
            ),
            "loss_minimum": gettext_lazy("In kWh, or m³ for water meters."),
            "main_meter": gettext_lazy(
                "It feeds every meter of its utility that has no feeder of its own."
            ),
        }

    def __init__(self, *args, property: Property, **kwargs):
        super().__init__(*args, **kwargs)
        meters = self.fields["main_meter"]
        meters.queryset = (
            Meter.objects.filter(unit__property=property, removed_at__isnull=True)
            .select_related("unit")
            .order_by("serial")
        )
        meters.label_from_instance = lambda meter: f"{meter.serial} ({meter.unit.name})"
        meters.empty_label = _("No main meter")


def _feeders(prop: Property) -> list[Meter]:
    """The property's feeders in service, with how many meters in service each feeds."""
    return list(
        Meter.objects.filter(unit__property=prop, removed_at__isnull=True)
        .annotate(
            fed=models.Count("fed_meters", filter=models.Q(fed_meters__removed_at__isnull=True))
        )
        .filter(fed__gt=0)
        .select_related("unit")
        .order_by("serial")
    )


@staff_view
@require_http_methods(["GET", "POST"])
def detector_settings_edit(request: HttpRequest, property_id) -> HttpResponse:
    """A property's detector rules: everyone may read them, owners change them."""
    prop = scoped_or_404(Property, request.scope, uuid=property_id)
    settings = detector_settings(property=prop)
    can_administer = request.scope.can(Capability.ADMINISTER)
    status = 200
    if request.method == "POST":
        require(request, Capability.ADMINISTER)
        form = DetectorSettingsForm(request.POST, instance=settings, property=prop)
        if form.is_valid():
            try:
                detector_settings_update(
                    property=prop,
                    actor=request.user,
                    **{name: form.cleaned_data[name] for name in SETTINGS_FIELDS},
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, _("The detector settings are saved."))
                return redirect("meters:detector-settings", property_id=prop.uuid)
        status = 400
    else:
        form = DetectorSettingsForm(instance=settings, property=prop)
    if not can_administer:
        for field in form.fields.values():
            field.disabled = True
    context = {
        "property": prop,
        "form": form,
        "can_administer": can_administer,
        "feeders": _feeders(prop),
    }
    return render(request, "meters/detector_settings.html", context, status=status)

"""The staff dashboard's audit log: who changed what, when, from what to what."""

from django import forms
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from prepaid.audit.selectors import (
    SYSTEM_ACTOR,
    AuditChoices,
    AuditFilters,
    audit_choices,
    audit_entries,
    audit_rows,
    audit_time_zone,
)
from prepaid.staff import staff_view

PAGE_SIZE = 25


class AuditFilterForm(forms.Form):
    property = forms.ChoiceField(label=_("Property"), required=False)
    actor = forms.ChoiceField(label=_("Who"), required=False)
    object_type = forms.ChoiceField(label=_("Kind of object"), required=False)
    object = forms.CharField(
        label=_("Object"),
        help_text=_("Its name or its id."),
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"type": "search"}),
    )
    action = forms.ChoiceField(label=_("Action"), required=False)
    since = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args, choices: AuditChoices, **kwargs):
        super().__init__(*args, **kwargs)
        self.properties = {str(prop.uuid): prop for prop in choices.properties}
        self.fields["property"].choices = [("", _("All properties"))] + [
            (key, prop.name) for key, prop in self.properties.items()
        ]
        self.fields["actor"].choices = [
            ("", _("Anyone")),
            (SYSTEM_ACTOR, _("The system")),
            *choices.actors,
        ]
        self.fields["object_type"].choices = [("", _("Any kind")), *choices.object_types]
        self.fields["action"].choices = [("", _("Any action"))] + [
            (action, action) for action in choices.actions
        ]

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", _("The end comes before the start."))
        return data

    def filters(self) -> AuditFilters:
        """The valid filters; an invalid one filters nothing, and shows its error."""
        self.is_valid()
        data = self.cleaned_data  # the valid fields only
        return AuditFilters(
            actor=data.get("actor", ""),
            object_type=data.get("object_type", ""),
            object=data.get("object", "").strip(),
            action=data.get("action", ""),
            since=data.get("since"),
            until=data.get("until"),
            property=self.properties.get(data.get("property", "")),
        )


@staff_view
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """Every audited change in the caller's scope, newest first, filtered; the table alone
    when htmx asks for it."""
    choices = audit_choices(scope=request.scope)
    form = AuditFilterForm(request.GET, choices=choices)
    filters = form.filters()
    zone = audit_time_zone(properties=choices.properties, chosen=filters.property)
    entries = audit_entries(scope=request.scope, filters=filters, zone=zone)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = audit_rows(page)
    context = {"form": form, "page": page, "rows": rows, "zone": zone}
    if request.htmx:
        return render(request, "audit/log.html#table", context)
    return render(request, "audit/log.html", context)

"""Settlement reconciliation pages: the imported files and their items, the upload with its dry
run and commit, matching again, resolving an item (an htmx row swap), and each source's settings.

Everyone on the staff reads them; importing, matching again, resolving and changing settings are
for owners (ADMINISTER). Imports belong to the organisation: staff limited to some properties
see the files that touch one of theirs, and only their properties' items in them.

The upload waits in the caller's session (signed; at most 5 MB) between the dry run and the
commit, and the commit names the SHA-256 of the file that was checked, as the bulk import does.
"""

import base64
from datetime import date

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import Property
from payments.forms_reconciliation import (
    BankMappingForm,
    CommitForm,
    FeeForm,
    ItemFilterForm,
    ResolveForm,
    UploadForm,
)
from payments.models import ReconciliationItem, SettlementImport, SettlementSource
from payments.reconciliation import services
from payments.reconciliation.matching import DETAILS
from payments.reconciliation.selectors import (
    import_items,
    import_status_counts,
    imports_for_scope,
    profiles_for_scope,
)
from prepaid.scoping import Capability
from prepaid.staff import require, scoped_or_404, staff_view

SESSION_KEY = "reports.reconciliation.upload"
PAGE_SIZE = 50
ADMINISTER = Capability.ADMINISTER


# Upload, dry run and commit -----------------------------------------------------------------------


def _pending(request) -> dict | None:
    """The upload waiting in this session for this organisation, if any."""
    pending = request.session.get(SESSION_KEY)
    if (
        not isinstance(pending, dict)
        or pending.get("organisation") != request.scope.organisation_id
        or pending.get("source") not in SettlementSource.values
    ):
        return None
    return pending


def _arguments(pending: dict) -> dict:
    return {
        "source": pending["source"],
        "data": base64.b64decode(pending["data"]),
        "file_name": pending["name"],
        "encoding": pending["encoding"],
        "start": date.fromisoformat(pending["start"]) if pending["start"] else None,
        "end": date.fromisoformat(pending["end"]) if pending["end"] else None,
    }


@staff_view(read=ADMINISTER)
def reconciliation_upload(request):
    """Choose the kind of file and upload it; it is checked before anything is kept."""
    status = 200
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload, data = form.cleaned_data["file"], form.cleaned_data["file"].read()
            start, end = form.cleaned_data["start"], form.cleaned_data["end"]
            request.session[SESSION_KEY] = {
                "organisation": request.scope.organisation_id,
                "source": form.cleaned_data["source"],
                "encoding": form.cleaned_data["encoding"],
                "start": start.isoformat() if start else "",
                "end": end.isoformat() if end else "",
                "name": upload.name[:200],
                "digest": services.file_digest(data),
                "data": base64.b64encode(data).decode(),
            }
            return redirect("reports:reconciliation-review")
        status = 400
    else:
        form = UploadForm(initial={"source": request.GET.get("source", SettlementSource.STRIPE)})
    context = {"form": form, "pending": _pending(request)}
    return render(request, "reports/reconciliation_upload.html", context, status=status)


def _review_page(request, pending: dict, report: services.ImportReport, *, status: int = 200):
    context = {
        "pending": pending,
        "source_label": SettlementSource(pending["source"]).label,
        "report": report,
        "details": DETAILS,
        "commit_form": CommitForm(initial={"digest": pending["digest"]}),
        "upload_form": UploadForm(initial={"source": pending["source"]}),
    }
    if request.htmx:
        return render(request, "reports/reconciliation_review.html#report", context, status=status)
    return render(request, "reports/reconciliation_review.html", context, status=status)


@staff_view(read=ADMINISTER)
def reconciliation_review(request):
    """The dry run: every problem in the file, or what importing it will find."""
    pending = _pending(request)
    if pending is None:
        messages.info(request, _("Upload a settlement file to check it."))
        return redirect("reports:reconciliation-upload")
    report = services.settlement_import_check(scope=request.scope, **_arguments(pending))
    return _review_page(request, pending, report)


@staff_view(read=ADMINISTER)
@require_POST
def reconciliation_commit(request):
    """Import the checked file: all of it, matched, or nothing."""
    pending = _pending(request)
    form = CommitForm(request.POST)
    if pending is None:
        messages.info(request, _("There is nothing to import: upload a file first."))
        return redirect("reports:reconciliation-upload")
    if not form.is_valid() or form.cleaned_data["digest"] != pending["digest"]:
        messages.error(request, _("The file changed since it was checked; check it again."))
        return redirect("reports:reconciliation-review")
    try:
        settlement_import, created = services.settlement_import_commit(
            scope=request.scope, actor=request.user, **_arguments(pending)
        )
    except services.ImportRejected as rejected:
        return _review_page(request, pending, rejected.report, status=400)
    del request.session[SESSION_KEY]
    if created:
        messages.success(request, _("The file is imported and matched."))
    else:
        messages.info(request, _("This file was imported before; nothing changed."))
    return redirect("reports:reconciliation-file", import_id=settlement_import.uuid)


# Imports and their items --------------------------------------------------------------------------


@staff_view
def reconciliation_files(request):
    """The imported settlement files, newest first, with how many of their items are open."""
    page = Paginator(imports_for_scope(scope=request.scope), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"page": page}
    if request.htmx:
        return render(request, "reports/reconciliation_files.html#files", context)
    return render(request, "reports/reconciliation_files.html", context)


def _item_context(request, item: ReconciliationItem, **extra) -> dict:
    return {
        "item": item,
        "details": DETAILS,
        "can_resolve": request.scope.can(ADMINISTER),
        **extra,
    }


@staff_view
def reconciliation_file(request, import_id):
    """One import: its period and counts, and its items, filtered by status, page by page."""
    settlement_import = scoped_or_404(
        SettlementImport.objects.select_related("created_by", "config"),
        request.scope,
        uuid=import_id,
    )
    form = ItemFilterForm(request.GET)
    items = import_items(
        scope=request.scope, settlement_import=settlement_import, status=form.chosen_status()
    )
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = import_status_counts(scope=request.scope, settlement_import=settlement_import)
    context = {
        "settlement_import": settlement_import,
        "form": form,
        "page": page,
        "counts": [
            (value, label, counts[value])
            for value, label in ReconciliationItem.Status.choices
            if counts[value]
        ],
        "open_count": counts["open"],
        "details": DETAILS,
        "can_resolve": request.scope.can(ADMINISTER),
    }
    if request.htmx:
        return render(request, "reports/reconciliation_file.html#items", context)
    return render(request, "reports/reconciliation_file.html", context)


@staff_view
@require_POST
def reconciliation_rematch(request, import_id):
    """Match the import's lines again, for what changed on our side since."""
    settlement_import = scoped_or_404(SettlementImport, request.scope, uuid=import_id)
    require(request, ADMINISTER)
    changes = services.reconciliation_match(settlement_import=settlement_import, actor=request.user)
    if any(changes.values()):
        messages.success(
            request,
            _("Matched again: %(created)d new, %(updated)d changed, %(removed)d gone.")
            % {
                "created": changes["created"],
                "updated": changes["updated"],
                "removed": changes["removed"],
            },
        )
    else:
        messages.info(request, _("Matched again: nothing changed."))
    return redirect("reports:reconciliation-file", import_id=settlement_import.uuid)


@staff_view
def reconciliation_resolve(request, item_id):
    """Resolve an open item with a note: the row's form (htmx swaps the row), then the row."""
    item = scoped_or_404(
        ReconciliationItem.objects.select_related(
            "settlement_import", "line", "intent", "refund", "receipt__property", "property"
        ),
        request.scope,
        uuid=item_id,
    )
    require(request, ADMINISTER)
    status = 200
    if request.method == "POST":
        form = ResolveForm(request.POST)
        if form.is_valid():
            try:
                item = services.item_resolve(
                    item=item, actor=request.user, note=form.cleaned_data["note"]
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                if request.htmx:
                    item.refresh_from_db()
                    context = _item_context(request, item, zone=item.settlement_import.zone)
                    return render(request, "reports/reconciliation_item_row.html", context)
                messages.success(request, _("The item is resolved."))
                return redirect(
                    "reports:reconciliation-file", import_id=item.settlement_import.uuid
                )
        status = 400
    else:
        form = ResolveForm()
    context = _item_context(
        request, item, form=form, editing=True, zone=item.settlement_import.zone
    )
    if request.htmx:
        # htmx swaps only successful answers: the row with its errors is one.
        return render(request, "reports/reconciliation_item_row.html", context)
    return render(request, "reports/reconciliation_resolve.html", context, status=status)


# Settings -----------------------------------------------------------------------------------------


def _bank_initial(request) -> dict:
    first = Property.objects.for_scope(request.scope).order_by("name").first()
    return {
        "currency": first.currency if first else "",
        "time_zone": first.time_zone if first else "UTC",
        "date_format": "%Y-%m-%d",
        "encoding": "auto",
        "delimiter": ",",
        "decimal_separator": ".",
        "skip_rows": 0,
    }


@staff_view
def reconciliation_settings(request):
    """How each source's files are read (the bank statement's columns) and the fee expected
    from each provider. Everyone reads them; owners change them."""
    source = request.POST.get("source") or request.GET.get("source") or SettlementSource.BANK
    if source not in SettlementSource.values:
        source = SettlementSource.BANK
    profiles = profiles_for_scope(scope=request.scope)
    profile = profiles.get(source)
    form_class = BankMappingForm if source == SettlementSource.BANK else FeeForm
    names = list(form_class.base_fields)
    saved = {name: getattr(profile, name) for name in names} if profile else None
    status = 200
    if request.method == "POST":
        require(request, ADMINISTER)
        form = form_class(request.POST)
        if form.is_valid():
            services.settlement_profile_save(
                organisation=request.scope.organisation,
                source=source,
                actor=request.user,
                values=form.cleaned_data,
            )
            messages.success(request, _("The settings are saved."))
            return redirect(f"{request.path}?source={source}")
        status = 400
    else:
        initial = saved or (_bank_initial(request) if source == SettlementSource.BANK else {})
        form = form_class(initial=initial)
    if not request.scope.can(ADMINISTER):
        for field in form.fields.values():
            field.disabled = True
    context = {
        "source": source,
        "source_label": SettlementSource(source).label,
        "sources": SettlementSource.choices,
        "form": form,
        "profile": profile,
        "can_change": request.scope.can(ADMINISTER),
    }
    return render(request, "reports/reconciliation_settings.html", context, status=status)


urlpatterns = [
    path("reconciliation/files/", reconciliation_files, name="reconciliation-files"),
    path("reconciliation/files/upload/", reconciliation_upload, name="reconciliation-upload"),
    path("reconciliation/files/review/", reconciliation_review, name="reconciliation-review"),
    path("reconciliation/files/commit/", reconciliation_commit, name="reconciliation-commit"),
    path(
        "reconciliation/files/<uuid:import_id>/",
        reconciliation_file,
        name="reconciliation-file",
    ),
    path(
        "reconciliation/files/<uuid:import_id>/match/",
        reconciliation_rematch,
        name="reconciliation-rematch",
    ),
    path(
        "reconciliation/items/<uuid:item_id>/resolve/",
        reconciliation_resolve,
        name="reconciliation-resolve",
    ),
    path("reconciliation/settings/", reconciliation_settings, name="reconciliation-settings"),
]

"""Bulk import for owners: templates to download, an upload, its dry run, and its commit.

The uploaded file is kept in the caller's session (Django signs session data; the file is at
most `MAX_BYTES`) between the dry run and the commit, and checked again at commit time. The
commit names the SHA-256 of the file that was checked, so a file uploaded since in another tab
is never committed unseen.
"""

import base64

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import imports
from accounts.forms_imports import CommitForm, UploadForm
from prepaid.scoping import Capability
from prepaid.staff import staff_view

SESSION_KEY = "accounts.import"


def _kinds():
    return [
        {"name": kind.name, "label": kind.label, "columns": kind.columns}
        for kind in imports.KINDS.values()
    ]


def _pending(request) -> dict | None:
    """The upload waiting in this session for this organisation, if any."""
    pending = request.session.get(SESSION_KEY)
    if (
        not isinstance(pending, dict)
        or pending.get("organisation") != request.scope.organisation_id
        or pending.get("kind") not in imports.KINDS
        or pending.get("format") not in imports.FORMATS
    ):
        return None
    return pending


def _data(pending: dict) -> bytes:
    return base64.b64decode(pending["data"])


@staff_view(read=Capability.ADMINISTER)
def import_start(request):
    """Choose what to import, download its template, upload the file."""
    status = 200
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            data = upload.read()
            request.session[SESSION_KEY] = {
                "organisation": request.scope.organisation_id,
                "kind": form.cleaned_data["kind"],
                "name": upload.name[:200],
                "format": form.file_format(upload.name),
                "digest": imports.file_digest(data),
                "data": base64.b64encode(data).decode(),
            }
            return redirect("accounts:import-review")
        status = 400
    else:
        form = UploadForm(initial={"kind": request.GET.get("kind", "properties")})
    context = {"form": form, "kinds": _kinds(), "pending": _pending(request)}
    return render(request, "accounts/import_start.html", context, status=status)


@staff_view(read=Capability.ADMINISTER)
def import_template(request):
    """A kind's template, as CSV or XLSX: the header row and an example row."""
    kind = request.GET.get("kind", "")
    file_format = request.GET.get("format", "csv")
    if kind not in imports.KINDS or file_format not in imports.FORMATS:
        raise Http404("No such template.")
    content = imports.TEMPLATE_WRITERS[file_format](kind)
    response = HttpResponse(content, content_type=imports.TEMPLATE_CONTENT_TYPES[file_format])
    response["Content-Disposition"] = f'attachment; filename="prepaid-{kind}.{file_format}"'
    return response


def _review_page(request, pending: dict, report: imports.ImportReport, *, status: int = 200):
    context = {
        "pending": pending,
        "kind": imports.KINDS[pending["kind"]],
        "report": report,
        "will_create": imports.created_summary(report.created),
        "commit_form": CommitForm(initial={"digest": pending["digest"]}),
        "upload_form": UploadForm(initial={"kind": pending["kind"]}),
    }
    if request.htmx:
        return render(request, "accounts/import_review.html#report", context, status=status)
    return render(request, "accounts/import_review.html", context, status=status)


@staff_view(read=Capability.ADMINISTER)
def import_review(request):
    """The dry run of the uploaded file: every row's problems, or what the commit will create."""
    pending = _pending(request)
    if pending is None:
        messages.info(request, _("Upload a file to check it."))
        return redirect("accounts:imports")
    report = imports.import_check(
        scope=request.scope,
        actor=request.user,
        kind=pending["kind"],
        data=_data(pending),
        file_format=pending["format"],
        file_name=pending["name"],
    )
    return _review_page(request, pending, report)


@staff_view(read=Capability.ADMINISTER)
@require_POST
@never_cache
def import_commit(request):
    """Write the checked file, all of it or nothing. The result page shows new MQTT devices'
    passwords once, so it is rendered here rather than after a redirect, and never cached."""
    pending = _pending(request)
    form = CommitForm(request.POST)
    if pending is None:
        messages.info(request, _("There is nothing to import: upload a file first."))
        return redirect("accounts:imports")
    if not form.is_valid() or form.cleaned_data["digest"] != pending["digest"]:
        messages.error(request, _("The file changed since it was checked; check it again."))
        return redirect("accounts:import-review")
    try:
        report = imports.import_commit(
            scope=request.scope,
            actor=request.user,
            kind=pending["kind"],
            data=_data(pending),
            file_format=pending["format"],
            file_name=pending["name"],
        )
    except imports.ImportRejected as rejected:
        return _review_page(request, pending, rejected.report, status=400)
    del request.session[SESSION_KEY]
    context = {
        "pending": pending,
        "kind": imports.KINDS[pending["kind"]],
        "report": report,
        "created": imports.created_summary(report.created),
    }
    return render(request, "accounts/import_done.html", context)


urlpatterns = [
    path("imports/", import_start, name="imports"),
    path("imports/template/", import_template, name="import-template"),
    path("imports/review/", import_review, name="import-review"),
    path("imports/commit/", import_commit, name="import-commit"),
]

"""Forms of the bulk import: the upload, and the commit of a file that was checked."""

from pathlib import PurePath

from django import forms
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _

from accounts.imports import FORMATS, MAX_BYTES, kind_choices


class UploadForm(forms.Form):
    kind = forms.ChoiceField(label=_("What the file holds"), choices=kind_choices)
    file = forms.FileField(
        label=_("File"),
        help_text=_("CSV or XLSX, with the template's header row."),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.xlsx"}),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if self.file_format(upload.name) is None:
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."))
        if upload.size > MAX_BYTES:
            raise forms.ValidationError(
                _("The file is larger than %(size)s; split it into several.")
                % {"size": filesizeformat(MAX_BYTES)}
            )
        return upload

    @staticmethod
    def file_format(name: str) -> str | None:
        suffix = PurePath(name).suffix.lower().lstrip(".")
        return suffix if suffix in FORMATS else None


class CommitForm(forms.Form):
    # The checked file's SHA-256: the commit is of that file, not of one uploaded since in
    # another tab.
    digest = forms.CharField(widget=forms.HiddenInput, min_length=64, max_length=64)

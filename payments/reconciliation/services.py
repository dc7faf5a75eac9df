"""Importing settlement files, matching them, and resolving what does not match.

- `settlement_import_check` is the dry run: the file read, every row's problems, or (when there
  are none) what importing it would find. Nothing is written.
- `settlement_import_commit` does the same under a lock on the organisation and keeps it all in
  one transaction: every line and its matching, or nothing. The same file again is the import
  made before; lines an earlier file already brought are skipped.
- `reconciliation_match` runs the matching again for an import (a late webhook, a refund
  confirmed since); resolved items are left as they were resolved.
- `item_resolve` closes an unmatched item with a note; `settlement_profile_save` keeps how a
  source's files are read and what fee is expected. Each is audited in its transaction.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Organisation
from payments.models import (
    OPEN_EXEMPT,
    ProviderConfig,
    ReconciliationItem,
    SettlementImport,
    SettlementLine,
    SettlementProfile,
    SettlementSource,
)
from payments.reconciliation import formats
from payments.reconciliation.bank import BankMapping
from payments.reconciliation.lines import Line, RowError, midnight
from payments.reconciliation.matching import Outcome, match, stored_line
from prepaid.audit.services import acting_user, audit_record, create_audited, update_audited
from prepaid.scoping import Scope

PREVIEW_LINES = 50
_BATCH = 2000
# A profile's fields a caller may set, by source.
FEE_FIELDS = ("fee_percent", "fee_fixed")
BANK_FIELDS = (
    "currency", "time_zone", "encoding", "delimiter", "skip_rows", "date_column", "date_format",
    "amount_column", "debit_column", "reference_column", "description_column", "id_column",
    "balance_column", "decimal_separator",
)  # fmt: skip


class ImportRejected(Exception):
    """The file has problems: nothing was written."""

    def __init__(self, report: ImportReport):
        super().__init__(f"{len(report.errors)} problem(s) in the file")
        self.report = report


@dataclass
class ImportReport:
    source: str
    file_name: str
    sha256: str
    encoding: str = ""
    zone: str = "UTC"
    period: tuple[datetime, datetime] | None = None
    errors: list[RowError] = field(default_factory=list)
    # The lines new to us, and how many an earlier import already holds.
    lines: list[Line] = field(default_factory=list)
    skipped: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    # The import this very file already made, when it was imported before.
    existing: SettlementImport | None = None
    config: ProviderConfig | None = None

    @property
    def clean(self) -> bool:
        return not self.errors

    def counts(self) -> Counter:
        return Counter(outcome.status for outcome in self.outcomes)

    def status_counts(self) -> list[tuple[Any, int]]:
        counts = self.counts()
        return [(label, counts[value]) for value, label in ReconciliationItem.Status.choices
                if counts[value]]  # fmt: skip

    def preview(self) -> list[Outcome]:
        return self.outcomes[:PREVIEW_LINES]


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bank_mapping(profile: SettlementProfile | None) -> BankMapping | None:
    if profile is None or not (profile.date_column and profile.amount_column):
        return None
    return BankMapping(
        **{name: getattr(profile, name) for name in BANK_FIELDS if name != "encoding"}
    )


def _provider_name(source: str) -> str:
    names = {"stripe": _("Stripe"), "wechat": _("WeChat Pay"), "alipay": _("Alipay")}
    return names.get(source, source)


def _provider_config(organisation_id: int, source: str) -> ProviderConfig | None:
    return ProviderConfig.objects.filter(organisation_id=organisation_id, provider=source).first()


def _local_period(
    zone: str, start: date | None, end: date | None
) -> tuple[datetime | None, datetime | None]:
    tz = ZoneInfo(zone)
    return (
        midnight(start, tz) if start else None,
        midnight(end + timedelta(days=1), tz) if end else None,
    )


def _plan(
    *,
    organisation_id: int,
    source: str,
    data: bytes,
    file_name: str,
    encoding: str,
    start: date | None,
    end: date | None,
) -> ImportReport:
    report = ImportReport(source=source, file_name=file_name, sha256=file_digest(data))
    report.existing = SettlementImport.objects.filter(
        organisation_id=organisation_id, sha256=report.sha256
    ).first()
    if report.existing is not None:
        return report
    profile = SettlementProfile.objects.filter(
        organisation_id=organisation_id, source=source
    ).first()
    config = None
    mapping = None
    if source == SettlementSource.BANK:
        mapping = bank_mapping(profile)
        if encoding == "auto" and profile is not None:
            encoding = profile.encoding
        if mapping is None:
            report.errors.append(
                RowError(0, "", _("Set up the bank statement's columns before importing one."))
            )
            return report
    else:
        config = _provider_config(organisation_id, source)
        if config is None:
            report.errors.append(
                RowError(
                    0,
                    "",
                    _(
                        "This organisation takes no payments through %(source)s, so there is "
                        "nothing to match the file against."
                    )
                    % {"source": _provider_name(source)},
                )
            )
            return report
    parsed = formats.read(source=source, data=data, encoding=encoding, mapping=mapping)
    report.encoding, report.zone = parsed.encoding, parsed.zone
    report.errors = parsed.errors
    if report.errors:
        return report
    if start and end and end < start:
        report.errors.append(RowError(0, "", _("The period ends before it starts.")))
        return report
    given_start, given_end = _local_period(parsed.zone, start, end)
    report.period = formats.covered_period(parsed, start=given_start, end=given_end)
    known = _known_identities(organisation_id, source, [line.identity for line in parsed.lines])
    report.lines = [line for line in parsed.lines if line.identity not in known]
    report.skipped = len(parsed.lines) - len(report.lines)
    report.outcomes = match(
        organisation_id=organisation_id,
        source=source,
        config_id=config.pk if config else None,
        lines=report.lines,
        period=report.period,
        profile=profile,
    )
    report.config = config
    return report


def _known_identities(organisation_id: int, source: str, identities: Sequence[str]) -> set[str]:
    known: set[str] = set()
    for offset in range(0, len(identities), _BATCH):
        known.update(
            SettlementLine.objects.filter(
                organisation_id=organisation_id,
                source=source,
                identity__in=identities[offset : offset + _BATCH],
            ).values_list("identity", flat=True)
        )
    return known


def settlement_import_check(
    *,
    scope: Scope,
    source: str,
    data: bytes,
    file_name: str,
    encoding: str = "auto",
    start: date | None = None,
    end: date | None = None,
) -> ImportReport:
    """The dry run: every problem in the file, or what importing it would find. Writes nothing."""
    return _plan(
        organisation_id=scope.organisation_id,
        source=source,
        data=data,
        file_name=file_name,
        encoding=encoding,
        start=start,
        end=end,
    )


@transaction.atomic
def settlement_import_commit(
    *,
    scope: Scope,
    actor,
    source: str,
    data: bytes,
    file_name: str,
    encoding: str = "auto",
    start: date | None = None,
    end: date | None = None,
) -> tuple[SettlementImport, bool]:
    """Import the file whole, matched, in this one transaction; the import, and whether it is
    new (False: this very file was imported before, and nothing changed). ImportRejected, with
    nothing written, when the file has problems."""
    # One import of an organisation at a time, so a line is never taken by two at once. NO KEY:
    # the organisation's other work is not held up meanwhile.
    Organisation.objects.select_for_update(no_key=True).get(pk=scope.organisation_id)
    report = _plan(
        organisation_id=scope.organisation_id,
        source=source,
        data=data,
        file_name=file_name,
        encoding=encoding,
        start=start,
        end=end,
    )
    if report.existing is not None:
        return report.existing, False
    if report.errors:
        raise ImportRejected(report)
    now = timezone.now()
    try:
        with transaction.atomic():
            settlement_import = SettlementImport.objects.create(
                organisation_id=scope.organisation_id,
                source=source,
                config=report.config,
                file_name=file_name[:200],
                sha256=report.sha256,
                encoding=report.encoding,
                size=len(data),
                zone=report.zone,
                period_start=report.period[0],
                period_end=report.period[1],
                lines_count=len(report.lines),
                skipped_count=report.skipped,
                created_by=acting_user(actor),
                matched_at=now,
            )
            stored = SettlementLine.objects.bulk_create(
                [_line_row(settlement_import, line) for line in report.lines], batch_size=_BATCH
            )
    except IntegrityError as error:
        report.errors = [
            RowError(0, "", _("Another import saved some of these lines meanwhile; try again."))
        ]
        raise ImportRejected(report) from error
    _sync_items(settlement_import, stored, report.outcomes)
    counts = report.counts()
    rematched = [
        str(other.uuid) for other in _overlapping(settlement_import) if _rematch(other) is not None
    ]
    audit_record(
        organisation_id=scope.organisation_id,
        actor=actor,
        action="reconciliation.import",
        instance=settlement_import,
        after={
            "source": source,
            "file": settlement_import.file_name,
            "sha256": report.sha256,
            "lines": len(report.lines),
            "skipped": report.skipped,
            "statuses": dict(counts),
            "rematched": rematched,
        },
    )
    return settlement_import, True


def _line_row(settlement_import: SettlementImport, line: Line) -> SettlementLine:
    return SettlementLine(
        settlement_import=settlement_import,
        organisation_id=settlement_import.organisation_id,
        source=settlement_import.source,
        identity=line.identity,
        row=line.row,
        kind=line.kind,
        transaction_id=line.transaction_id[:200],
        refund_id=line.refund_id[:200],
        reference=line.reference[:200],
        refund_reference=line.refund_reference[:200],
        description=line.description[:300],
        gross=line.gross,
        fee=line.fee,
        net=line.net,
        currency=line.currency,
        occurred_at=line.occurred_at,
        raw=dict(line.raw),
    )


_OUTCOME_FIELDS = (
    "status", "detail", "currency", "occurred_at", "intent_id", "refund_id", "receipt_id",
    "property_id", "provider_amount", "our_amount", "fee", "expected_fee",
)  # fmt: skip


def _apply(item: ReconciliationItem, outcome: Outcome) -> bool:
    changed = False
    for name in _OUTCOME_FIELDS:
        value = getattr(outcome, name)
        if getattr(item, name) != value:
            setattr(item, name, value)
            changed = True
    if changed:
        # bulk_update leaves auto_now alone.
        item.updated_at = timezone.now()
    return changed


def _sync_items(
    settlement_import: SettlementImport,
    lines: Sequence[SettlementLine],
    outcomes: Sequence[Outcome],
) -> Counter:
    """Make the import's items what `outcomes` says, leaving resolved ones as they are."""
    existing = list(settlement_import.items.all())
    by_line = {item.line_id: item for item in existing if item.line_id is not None}
    by_key = {_item_key(item): item for item in existing if item.line_id is None}
    create, update, keep = [], [], set()
    for index, outcome in enumerate(outcomes):
        line = lines[index] if index < len(lines) else None
        item = by_line.get(line.pk) if line is not None else by_key.get(outcome.key())
        if item is None:
            item = ReconciliationItem(
                settlement_import=settlement_import,
                organisation_id=settlement_import.organisation_id,
                line=line,
            )
            _apply(item, outcome)
            create.append(item)
            continue
        keep.add(item.pk)
        if item.resolved_at is None and _apply(item, outcome):
            update.append(item)
    gone = [item.pk for item in by_key.values() if item.pk not in keep and item.resolved_at is None]
    if gone:
        ReconciliationItem.objects.filter(pk__in=gone).delete()
    if update:
        ReconciliationItem.objects.bulk_update(
            update, [*_OUTCOME_FIELDS, "updated_at"], batch_size=_BATCH
        )
    ReconciliationItem.objects.bulk_create(create, batch_size=_BATCH)
    return Counter({"created": len(create), "updated": len(update), "removed": len(gone)})


def _item_key(item: ReconciliationItem) -> tuple[str, int]:
    if item.refund_id is not None:
        return ("refund", item.refund_id)
    if item.receipt_id is not None:
        return ("receipt", item.receipt_id)
    return ("intent", item.intent_id)


def _overlapping(settlement_import: SettlementImport):
    return SettlementImport.objects.filter(
        organisation_id=settlement_import.organisation_id,
        source=settlement_import.source,
        period_start__lt=settlement_import.period_end,
        period_end__gt=settlement_import.period_start,
    ).exclude(pk=settlement_import.pk)


def _rematch(settlement_import: SettlementImport) -> Counter | None:
    """Match the import again; the changes made, or None when nothing changed."""
    settlement_import = SettlementImport.objects.select_for_update().get(pk=settlement_import.pk)
    lines = list(settlement_import.lines.order_by("row", "pk"))
    profile = SettlementProfile.objects.filter(
        organisation_id=settlement_import.organisation_id, source=settlement_import.source
    ).first()
    outcomes = match(
        organisation_id=settlement_import.organisation_id,
        source=settlement_import.source,
        config_id=settlement_import.config_id,
        lines=[stored_line(line) for line in lines],
        period=(settlement_import.period_start, settlement_import.period_end),
        profile=profile,
        import_id=settlement_import.pk,
    )
    changes = _sync_items(settlement_import, lines, outcomes)
    settlement_import.matched_at = timezone.now()
    settlement_import.save(update_fields=["matched_at"])
    return changes if any(changes.values()) else None


@transaction.atomic
def reconciliation_match(*, settlement_import: SettlementImport, actor) -> Counter:
    """Run the matching of an import again; how many items it created, changed and removed."""
    changes = _rematch(settlement_import) or Counter()
    audit_record(
        organisation_id=settlement_import.organisation_id,
        actor=actor,
        action="reconciliation.match",
        instance=settlement_import,
        after=dict(changes),
    )
    return changes


@transaction.atomic
def item_resolve(*, item: ReconciliationItem, actor, note: str) -> ReconciliationItem:
    """Close an unmatched item with a note saying how it was settled. The same note sent twice
    (a double submit) is the one resolution."""
    note = " ".join(note.split())
    if not note:
        raise ValidationError({"note": _("Say how it was resolved.")})
    item = ReconciliationItem.objects.select_for_update().get(pk=item.pk)
    if item.status in OPEN_EXEMPT:
        raise ValidationError(_("This item matches: there is nothing to resolve."))
    if item.resolved_at is not None:
        if item.resolution_note == note and item.resolved_by_id == getattr(actor, "pk", None):
            return item
        raise ValidationError(_("This item was resolved already."))
    update_audited(
        instance=item,
        changes={
            "resolved_at": timezone.now(),
            "resolved_by": acting_user(actor),
            "resolution_note": note[:500],
        },
        actor=actor,
        action="reconciliation.resolve",
        organisation_id=item.organisation_id,
        property_id=item.property_id,
        reason=note[:500],
    )
    return item


@transaction.atomic
def settlement_profile_save(
    *, organisation: Organisation, source: str, actor, values: Mapping[str, Any]
) -> SettlementProfile:
    """Keep how the organisation's files from `source` are read and what fee is expected."""
    allowed = FEE_FIELDS + (BANK_FIELDS if source == SettlementSource.BANK else ())
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValidationError({name: _("This cannot be set here.") for name in unknown})
    profile = (
        SettlementProfile.objects.select_for_update()
        .filter(organisation=organisation, source=source)
        .first()
    )
    if profile is None:
        profile = SettlementProfile(organisation=organisation, source=source, **values)
        return create_audited(
            profile,
            actor=actor,
            action="reconciliation.settings.create",
            fields=["source", *values],
            organisation_id=organisation.pk,
        )
    update_audited(
        instance=profile,
        changes=dict(values),
        actor=actor,
        action="reconciliation.settings.update",
        organisation_id=organisation.pk,
    )
    return profile

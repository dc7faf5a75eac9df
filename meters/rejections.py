"""Unusable input from meters, counted per meter and reason: what staff see with a meter."""

from collections.abc import Mapping
from datetime import datetime

from meters.models import MeterRejection


def meter_rejections_count(*, counts: Mapping[tuple[int, str], int], now: datetime) -> None:
    """Add to each meter's count of unusable input per reason (what staff see with the meter).

    Each meter is polled by one worker at a time and charged by one at a time, and polling and
    charging count different reasons, so reading then writing the counts loses no increment.
    """
    if not counts:
        return
    known = {
        (row.meter_id, row.reason): row
        for row in MeterRejection.objects.filter(meter_id__in={meter_id for meter_id, _ in counts})
    }
    rows = []
    for (meter_id, reason), count in counts.items():
        row = known.get((meter_id, reason)) or MeterRejection(
            meter_id=meter_id, reason=reason, count=0, first_at=now
        )
        row.count += count
        row.last_at = now
        rows.append(row)
    MeterRejection.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["meter", "reason"],
        update_fields=["count", "last_at"],
    )

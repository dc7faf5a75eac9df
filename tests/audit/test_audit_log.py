import pytest
from django.db import DatabaseError, connection, transaction

from accounts import services
from prepaid.audit.models import AuditLog
from prepaid.audit.services import AuditOutsideTransaction, audit_record, update_audited
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditlog SET reason = 'rewritten'", "DELETE FROM audit_auditlog"],
)
def test_the_database_refuses_to_rewrite_history(property_a1, statement):
    assert AuditLog.objects.exists()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditLog.objects.filter(reason="rewritten").count() == 0


@pytest.mark.django_db(transaction=True)
def test_auditing_outside_a_transaction_is_refused(property_a1):
    with pytest.raises(AuditOutsideTransaction):
        audit_record(organisation_id=property_a1.organisation_id, action="x", instance=property_a1)


def test_a_change_that_fails_leaves_no_audit_row(property_a1):
    before = AuditLog.objects.count()
    with pytest.raises(Exception, match="time_zone"):
        services.property_update(property=property_a1, actor=None, time_zone="Nowhere/Else")
    assert AuditLog.objects.count() == before
    property_a1.refresh_from_db()
    assert property_a1.time_zone == "Asia/Shanghai"


def test_an_update_records_only_changed_fields_and_nothing_when_unchanged(property_a1):
    unit = factories.UnitFactory(property=property_a1, name="101", floor="1")
    with transaction.atomic():
        row = update_audited(
            instance=unit,
            changes={"name": "102", "floor": "1"},
            actor=None,
            action="unit.update",
            organisation_id=property_a1.organisation_id,
        )
        assert (row.before, row.after) == ({"name": "101"}, {"name": "102"})
        assert (
            update_audited(
                instance=unit,
                changes={"name": "102"},
                actor=None,
                action="unit.update",
                organisation_id=property_a1.organisation_id,
            )
            is None
        )

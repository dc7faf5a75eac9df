from django.db import migrations

from prepaid.append_only import AppendOnly

# Checked at commit (deferred), once every posting of the transaction is in.
BALANCED_FUNCTION = """
CREATE OR REPLACE FUNCTION billing_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    postings integer;
BEGIN
    SELECT COALESCE(SUM(amount), 0), COUNT(*) INTO total, postings
    FROM billing_posting WHERE transaction_id = NEW.transaction_id;
    IF total <> 0 OR postings < 2 THEN
        RAISE EXCEPTION 'ledger transaction % is unbalanced: % postings summing to %',
            NEW.transaction_id, postings, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
"""
BALANCED_TRIGGER = """
CREATE CONSTRAINT TRIGGER billing_posting_balanced AFTER INSERT ON billing_posting
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_check_balanced();
"""


def create_balance_check(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BALANCED_FUNCTION, params=None)
        schema_editor.execute(BALANCED_TRIGGER, params=None)


def drop_balance_check(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS billing_posting_balanced ON billing_posting;")


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        AppendOnly("LedgerTransaction"),
        AppendOnly("Posting"),
        AppendOnly("Charge"),
        AppendOnly("Receipt"),
        migrations.RunPython(create_balance_check, drop_balance_check),
    ]

"""On Postgres, the database itself refuses to commit a transaction whose entries do not sum to
zero: a deferred constraint trigger checks each touched ledger transaction at COMMIT, so raw SQL
(the set-based metering tick) is held to the same rule as `ledger_post`. Other databases rely on
the service's check alone."""

from django.db import migrations

CREATE = """
CREATE FUNCTION billing_entry_zero_sum() RETURNS trigger AS $$
DECLARE
    tx_id bigint;
    total numeric;
BEGIN
    IF TG_OP = 'DELETE' THEN
        tx_id := OLD.transaction_id;
    ELSE
        tx_id := NEW.transaction_id;
    END IF;
    SELECT COALESCE(SUM(amount), 0) INTO total FROM billing_entry WHERE transaction_id = tx_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: entries sum to %', tx_id, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER billing_entry_zero_sum
    AFTER INSERT OR UPDATE OR DELETE ON billing_entry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_entry_zero_sum();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_entry_zero_sum ON billing_entry;
DROP FUNCTION IF EXISTS billing_entry_zero_sum();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_ledger_accounts_transactions_entries")]

    operations = [migrations.RunPython(create_trigger, drop_trigger, elidable=False)]

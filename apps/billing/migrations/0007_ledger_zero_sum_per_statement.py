"""The database's zero-sum check moves from a deferred row trigger (one query per entry at
COMMIT: most of a 10,000-posting batch's commit time) to a statement trigger that checks, once
per INSERT, every transaction the statement wrote entries for. It is stricter too: a
transaction's entries must all arrive in one statement (as `ledger_post_many` writes them), so
legs cannot be added to a transaction later, balanced or not. Entries are never updated or
deleted (migration 0005), so INSERT is the only event to check. Postgres only; the service's
check in code holds on every database."""

from django.db import migrations

CREATE = """
DROP TRIGGER IF EXISTS billing_entry_zero_sum ON billing_entry;
DROP FUNCTION IF EXISTS billing_entry_zero_sum();

CREATE FUNCTION billing_entries_zero_sum() RETURNS trigger AS $$
DECLARE
    bad record;
    written bigint;
    stored bigint;
BEGIN
    -- Each transaction's new legs sum to zero ...
    SELECT transaction_id AS tx_id, SUM(amount) AS total INTO bad
      FROM new_entries GROUP BY transaction_id HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: entries sum to %',
            bad.tx_id, bad.total USING ERRCODE = 'check_violation';
    END IF;
    -- ... and are all its legs: none was there before this statement (counted through the
    -- entries' transaction index, never by joining the unindexed transition table).
    SELECT COUNT(*) INTO written FROM new_entries;
    SELECT COUNT(*) INTO stored FROM billing_entry
     WHERE transaction_id IN (SELECT DISTINCT transaction_id FROM new_entries);
    IF stored <> written THEN
        RAISE EXCEPTION 'ledger transaction already has entries: legs cannot be added'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_entries_zero_sum
    AFTER INSERT ON billing_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION billing_entries_zero_sum();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_entries_zero_sum ON billing_entry;
DROP FUNCTION IF EXISTS billing_entries_zero_sum();

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


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_stripe_reconciliation")]

    operations = [migrations.RunPython(create_trigger, drop_trigger, elidable=False)]

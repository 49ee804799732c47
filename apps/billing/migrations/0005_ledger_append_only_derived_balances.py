"""The ledger becomes append-only and its cached balances a value the database derives.

- Transactions and entries are never updated or deleted: a trigger refuses it (a mistake is
  fixed by a correcting transaction). TRUNCATE, which only a test run or an operator wiping a
  database uses, is left alone.
- An account's `balance` is maintained by the database on entry insert: one statement-level
  trigger adds each inserted statement's entries, summed per account, to their accounts. The
  application never writes a balance; on Postgres a direct UPDATE of `balance` (one not made
  by that trigger) is refused, so a balance can only change through a posting.
- On SQLite (development and the default test run) the same rules hold with row triggers,
  except the balance guard: SQLite cannot tell the trigger's write from a direct one, so there
  `ledger_check` is what notices a hand-edited balance.
"""

from django.db import migrations

PG_CREATE = """
CREATE FUNCTION billing_refuse_ledger_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused (post a correcting transaction)',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_entry_append_only
    BEFORE UPDATE OR DELETE ON billing_entry
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_ledger_change();

CREATE TRIGGER billing_transaction_append_only
    BEFORE UPDATE OR DELETE ON billing_transaction
    FOR EACH ROW EXECUTE FUNCTION billing_refuse_ledger_change();

CREATE FUNCTION billing_entry_move_balances() RETURNS trigger AS $$
BEGIN
    UPDATE billing_ledgeraccount AS account
       SET balance = account.balance + added.total
      FROM (SELECT account_id, SUM(amount) AS total FROM new_entries GROUP BY account_id) AS added
     WHERE account.id = added.account_id AND added.total <> 0;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_entry_move_balances
    AFTER INSERT ON billing_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION billing_entry_move_balances();

CREATE FUNCTION billing_guard_balance() RETURNS trigger AS $$
BEGIN
    -- Depth 1 is a statement someone ran; the entry trigger's own UPDATE runs at depth 2.
    IF pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'ledger account % balance changes only through posted entries', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER billing_guard_balance
    BEFORE UPDATE OF balance ON billing_ledgeraccount
    FOR EACH ROW WHEN (NEW.balance IS DISTINCT FROM OLD.balance)
    EXECUTE FUNCTION billing_guard_balance();
"""

PG_DROP = """
DROP TRIGGER IF EXISTS billing_guard_balance ON billing_ledgeraccount;
DROP FUNCTION IF EXISTS billing_guard_balance();
DROP TRIGGER IF EXISTS billing_entry_move_balances ON billing_entry;
DROP FUNCTION IF EXISTS billing_entry_move_balances();
DROP TRIGGER IF EXISTS billing_transaction_append_only ON billing_transaction;
DROP TRIGGER IF EXISTS billing_entry_append_only ON billing_entry;
DROP FUNCTION IF EXISTS billing_refuse_ledger_change();
"""

SQLITE_CREATE = [
    *(
        f"""CREATE TRIGGER billing_{table}_append_only_{op.lower()} BEFORE {op} ON billing_{table}
        BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {op} on billing_{table} refused');
        END"""
        for table in ("entry", "transaction")
        for op in ("UPDATE", "DELETE")
    ),
    """CREATE TRIGGER billing_entry_move_balances AFTER INSERT ON billing_entry
    BEGIN
        UPDATE billing_ledgeraccount SET balance = balance + NEW.amount WHERE id = NEW.account_id;
    END""",
]

SQLITE_DROP = [
    *(
        f"DROP TRIGGER IF EXISTS billing_{table}_append_only_{op.lower()}"
        for table in ("entry", "transaction")
        for op in ("UPDATE", "DELETE")
    ),
    "DROP TRIGGER IF EXISTS billing_entry_move_balances",
]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_CREATE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement, params=None)
    else:
        raise RuntimeError(
            f"the ledger's triggers are written for Postgres and SQLite, not {vendor}"
        )


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_DROP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DROP:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_ledger_account_payouts_sent")]

    operations = [migrations.RunPython(create_triggers, drop_triggers, elidable=False)]

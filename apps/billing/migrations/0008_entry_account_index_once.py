"""An entry's account is already the first column of the (account, -id) index: the foreign
key's own index on account_id alone is dropped (one index less to write per entry).

Only the index goes, on Postgres, found by its columns. Not an AlterField: on SQLite that
rebuilds billing_entry, and a rebuilt table loses the triggers that keep the ledger
append-only and move the balances (0005); SQLite keeps its small extra index."""

import django.db.models.deletion
from django.db import migrations, models

SPARE_INDEX = "billing_entry_account_only"


def drop_account_only_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "billing_entry")
    for name, info in constraints.items():
        if (
            info["index"]
            and info["columns"] == ["account_id"]
            and not (info["unique"] or info["primary_key"] or info["foreign_key"])
        ):
            schema_editor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")


def restore_account_only_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {SPARE_INDEX} ON billing_entry (account_id)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_ledger_zero_sum_per_statement"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="entry",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="billing.ledgeraccount",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(
                    drop_account_only_index, restore_account_only_index, elidable=False
                ),
            ],
        ),
    ]

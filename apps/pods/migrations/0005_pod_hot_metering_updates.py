"""Metering's per-tick UPDATE of every running pod (billed_until, billed_seconds, share_carry)
becomes a HOT update: no index covers those columns any more (the status index now orders the
scheduler's PENDING queue by age instead of covering billed_until), and on Postgres the pods
table leaves a fifth of each page free, so the new row version fits beside the old one and no
index entry is written."""

from django.db import migrations, models


def fillfactor(percent: int) -> migrations.RunPython:
    def apply(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE pods_pod SET (fillfactor = {percent})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("pods", "0004_pod_resources_volumes_templates")]

    operations = [
        migrations.RemoveIndex(model_name="pod", name="pods_pod_status_c5ec32_idx"),
        migrations.AddIndex(
            model_name="pod",
            index=models.Index(fields=["status", "created_at"], name="pod_status_created_idx"),
        ),
        migrations.RunPython(fillfactor(80), fillfactor(100)),
    ]

"""Data: a deployment made before autoscaling keeps its fixed size (min = max = replicas)."""

from django.db import migrations
from django.db.models import F


def fixed_size(apps, schema_editor):
    Deployment = apps.get_model("catalog", "Deployment")
    Deployment.objects.update(min_replicas=F("replicas"), max_replicas=F("replicas"))


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_deployment_scaling_key_budgets_cold_starts")]

    operations = [migrations.RunPython(fixed_size, migrations.RunPython.noop)]

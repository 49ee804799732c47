"""`manage.py seed_pod_templates`: publish the standard pod templates (idempotent)."""

from typing import Any

from django.core.management.base import BaseCommand

from apps.pods.pod_templates import public_templates_seed


class Command(BaseCommand):
    help = "Create or update the public pod templates (PyTorch+Jupyter, vLLM, ComfyUI, CUDA)."

    def handle(self, *args: Any, **options: Any) -> None:
        created, updated = public_templates_seed()
        self.stdout.write(f"pod templates: {created} created, {updated} updated")

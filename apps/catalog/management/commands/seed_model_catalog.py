from typing import Any

from django.core.management.base import BaseCommand

from apps.catalog.services.templates import templates_seed


class Command(BaseCommand):
    help = "Create or update the model catalog's templates (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        result = templates_seed()
        self.stdout.write(
            f"model catalog: {result.created} created, {result.updated} updated, "
            f"{result.unchanged} unchanged"
        )

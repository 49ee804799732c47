from typing import Any

from django.core.management.base import BaseCommand

from apps.core.services import schedule_sync


class Command(BaseCommand):
    help = "Write the periodic schedule declared in apps.core.schedule into celery beat's tables."

    def handle(self, *args: Any, **options: Any) -> None:
        result = schedule_sync()
        self.stdout.write(
            f"schedule synced: {result['created']} created, {result['updated']} updated, "
            f"{result['deleted']} deleted"
        )

from django.db import transaction

from apps.core.schedule import NAME_PREFIX, SCHEDULE


@transaction.atomic
def schedule_sync() -> dict[str, int]:
    """Make django-celery-beat's periodic tasks match `SCHEDULE`; safe to run any number of
    times, from several processes (the rows are keyed by their unique name)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    created = updated = 0
    wanted = set()
    for entry in SCHEDULE:
        name = NAME_PREFIX + entry.name
        wanted.add(name)
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=entry.every_seconds, period=IntervalSchedule.SECONDS
        )
        _, was_created = PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                "task": entry.task,
                "interval": interval,
                "expire_seconds": entry.expires_seconds,
                "enabled": True,
            },
        )
        created += was_created
        updated += not was_created
    deleted, _ = (
        PeriodicTask.objects.filter(name__startswith=NAME_PREFIX).exclude(name__in=wanted).delete()
    )
    return {"created": created, "updated": updated, "deleted": deleted}

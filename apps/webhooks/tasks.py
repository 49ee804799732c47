"""Celery tasks of the webhooks app: thin wrappers over the services."""

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from apps.webhooks import notify, services


@shared_task(name="webhooks.deliver", ignore_result=True)
def deliver(delivery_id: str) -> None:
    """One attempt; on failure the next one is queued with its backoff as the countdown."""
    delay = services.delivery_attempt(delivery_id=delivery_id)
    if delay is not None:
        deliver.apply_async((delivery_id,), countdown=delay)


@shared_task(name="webhooks.retry_due", ignore_result=True)
def retry_due() -> int:
    """Attempts that are due but whose task was lost (a worker died, the broker was down)."""
    # A minute's grace: a delivery whose queued task is about to run is not sent twice (and
    # if it were, only one attempt would go: delivery_attempt claims it under a row lock).
    due = services.deliveries_due(now=timezone.now() - timedelta(seconds=60))
    for delivery_id in due:
        deliver.delay(str(delivery_id))
    return len(due)


@shared_task(name="webhooks.check_low_balances", ignore_result=True)
def check_low_balances() -> int:
    return notify.balances_low_notify()

import logging

from celery import shared_task

from apps.core.idempotency import idempotency_purge

logger = logging.getLogger(__name__)


@shared_task(name="core.purge_idempotency_keys", ignore_result=True)
def purge_idempotency_keys_task() -> int:
    """Hourly: forget Idempotency-Key records past their 24 h. Safe to run twice."""
    deleted = idempotency_purge()
    if deleted:
        logger.info("idempotency: %s expired keys purged", deleted)
    return deleted

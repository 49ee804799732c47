import logging

from celery import shared_task

from apps.billing.services import ledger_check

logger = logging.getLogger(__name__)


@shared_task(name="billing.ledger_check", ignore_result=True)
def ledger_check_task() -> int:
    """Hourly proof that cached balances match entries and every transaction balances. Read
    only, so safe to run twice or to kill halfway."""
    mismatches = ledger_check()
    for mismatch in mismatches:
        logger.error("ledger check: %s", mismatch)
    return len(mismatches)

import logging
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.utils import timezone

from apps.billing.services import StripeNotConfiguredError, ledger_check, stripe_reconcile

logger = logging.getLogger(__name__)


@shared_task(name="billing.ledger_check", ignore_result=True)
def ledger_check_task() -> int:
    """Hourly proof that cached balances match entries and every transaction balances. Read
    only, so safe to run twice or to kill halfway."""
    mismatches = ledger_check()
    for mismatch in mismatches:
        logger.error("ledger check: %s", mismatch)
    return len(mismatches)


@shared_task(name="billing.reconcile_stripe", ignore_result=True)
def reconcile_stripe_task(day: str | None = None) -> int | None:
    """Daily: reconcile the ledger with Stripe over one UTC day (`day` as YYYY-MM-DD, default
    yesterday). Writes a report and logs each mismatch; posts nothing, so safe to run twice
    (the rerun replaces the day's report). Returns the number of mismatches, or None when
    Stripe is not configured."""
    if day is None:
        start = (timezone.now() - timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
    else:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    try:
        report = stripe_reconcile(start=start, end=start + timedelta(days=1))
    except StripeNotConfiguredError as exc:
        logger.warning("stripe reconciliation skipped: %s", exc)
        return None
    return report.mismatches.count()

"""Thin Celery wrappers around the payout services (each safe to run twice)."""

import logging

from celery import shared_task

from apps.providers.selectors import payouts_clearing_difference
from apps.providers.services import payout_send, payouts_send_due, payouts_settle_due

logger = logging.getLogger(__name__)


@shared_task(name="providers.send_payout", ignore_result=True)
def send_payout(payout_id: str) -> str:
    return payout_send(payout_id=payout_id).status


@shared_task(name="providers.send_payouts", ignore_result=True)
def send_payouts() -> int:
    return payouts_send_due()


@shared_task(name="providers.settle_payouts", ignore_result=True)
def settle_payouts() -> int:
    return payouts_settle_due()


@shared_task(name="providers.check_payouts_clearing", ignore_result=True)
def check_payouts_clearing() -> int:
    """Hourly proof that payouts clearing holds exactly the pending payouts. Read only."""
    difference = payouts_clearing_difference()
    if difference:
        logger.error("payouts clearing is off by %s micro-dollars", difference)
    return difference

"""The payout tasks are in the periodic schedule under their registered names, and run."""

import pytest
from django.test import TestCase

from apps.core.schedule import SCHEDULE
from apps.providers.models import PayoutStatus
from apps.providers.services import payout_approve, payout_request
from apps.providers.tasks import (
    check_payouts_clearing,
    send_payout,
    send_payouts,
    settle_payouts,
)
from config.celery import app
from tests.factories import earn

pytestmark = pytest.mark.django_db


def test_the_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    names = {entry.task for entry in SCHEDULE}
    assert {"providers.send_payouts", "providers.settle_payouts"} <= names
    assert names <= set(app.tasks)


def test_the_tasks_send_and_settle(provider, operator, paypal):
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=20_000_000, method="PAYPAL", details={"email": "a@example.com"}
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=False):
        payout_approve(payout=payout, operator=operator)

    assert check_payouts_clearing.apply().get() == 0  # clearing holds the pending payout
    assert send_payout.apply(args=[str(payout.pk)]).get() == PayoutStatus.SENT
    assert send_payouts.apply().get() == 0  # nothing left to send
    paypal.settle(paypal.batch_for(str(payout.pk))["batch_header"]["payout_batch_id"], "SUCCESS")
    assert settle_payouts.apply().get() == 1
    payout.refresh_from_db()
    assert payout.status == PayoutStatus.PAID
    assert check_payouts_clearing.apply().get() == 0  # and returns to zero once paid

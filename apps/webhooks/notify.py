"""What users hear about: each domain event becomes a webhook event (for their endpoints) and,
for some, one email. Both are recorded under a key unique to the event, so a signal received
twice, a task retried or a sweep run again never sends a second copy.

Emails sent here: a provider's node went offline; a payout was sent. (The low-balance warning
and "your pods were stopped" mails come from the metering tick.)"""

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, Greatest
from django.template.loader import render_to_string
from django.utils import timezone

from apps.billing.models import AccountKind, LedgerAccount
from apps.billing.services import wallet_floor
from apps.core.money import micros_to_usd
from apps.pods.models import Pod, PodStatus
from apps.providers.models import PayoutMethod, PayoutStatus, Provider
from apps.webhooks.models import EventType, SentNotification
from apps.webhooks.services import event_emit

logger = logging.getLogger(__name__)


def email_once(*, key: str, user: Any, template: str, context: dict[str, Any]) -> bool:
    """Send `emails/<template>_subject.txt` / `_body.txt` to `user` unless the mail with
    `key` went already. The record is written first, in its own transaction, so two racing
    senders send one mail; a failed send is logged and not retried (a missed mail is better
    than a mail a minute)."""
    if not user or not user.email:
        return False
    ctx = {"user": user, "site_url": settings.SITE_URL, **context}
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", ctx).split())
    try:
        with transaction.atomic():
            SentNotification.objects.create(key=key[:200], user=user, subject=subject[:200])
    except IntegrityError:
        return False
    body = render_to_string(f"emails/{template}_body.txt", ctx)

    def send() -> None:
        try:
            send_mail(subject, body, None, [user.email])
        except Exception:
            logger.exception("notification %s to %s: sending failed", key, user.email)

    transaction.on_commit(send)
    return True


def pod_status_changed(event: Any) -> None:
    """A PodEvent was recorded (apps.pods.lifecycle): a webhook for the pod's owner."""
    pod = event.pod
    event_emit(
        user_id=pod.owner_id,
        type=EventType.POD_STATUS,
        dedupe_key=f"pod-event:{event.pk}",
        data={
            "pod_id": str(pod.pk),
            "name": pod.name,
            "from_status": event.from_status,
            "status": event.to_status,
            "reason": event.reason,
            "at": _iso(event.at),
        },
    )


def deployment_status_changed(event: Any) -> None:
    deployment = event.deployment
    event_emit(
        user_id=deployment.owner_id,
        type=EventType.DEPLOYMENT_STATUS,
        dedupe_key=f"deployment-event:{event.pk}",
        data={
            "deployment_id": str(deployment.pk),
            "name": deployment.name,
            "model": deployment.model_name,
            "from_status": event.from_status,
            "status": event.to_status,
            "reason": event.reason,
            "at": _iso(event.at),
        },
    )


def payout_status_changed(event: Any) -> None:
    """A PayoutEvent was recorded: a webhook for the provider's owner; one email when the money
    has left."""
    payout = event.payout
    owner = payout.provider.owner
    data = {
        "payout_id": str(payout.pk),
        "amount_usd": micros_to_usd(payout.amount),
        "method": payout.method,
        "from_status": event.from_status,
        "status": event.to_status,
        "reason": event.reason,
        "at": _iso(event.at),
    }
    event_emit(
        user_id=owner.pk,
        type=EventType.PAYOUT_STATUS,
        dedupe_key=f"payout-event:{event.pk}",
        data=data,
    )
    # The money has left when PayPal accepted the batch (SENT), or, for crypto, when the
    # operator's signed transfer is recorded (PAID; SENT there means "ready to sign").
    left_at = PayoutStatus.PAID if payout.method == PayoutMethod.CRYPTO else PayoutStatus.SENT
    if event.to_status == left_at:
        email_once(
            key=f"payout-sent:{payout.pk}",
            user=owner,
            template="payout_sent",
            context={"payout": payout, **data},
        )


def node_went_offline(*, node: Any, last_heartbeat_at: datetime | None, reason: str) -> None:
    """A provider's node went OFFLINE (apps.nodes.sweep): a webhook and one email to the
    provider's owner, once per outage (keyed by the last heartbeat before it)."""
    if node.provider_id is None:
        return  # a platform node: the operators' dashboards show it
    provider = Provider.objects.select_related("owner").filter(pk=node.provider_id).first()
    if provider is None:
        return
    since = _iso(last_heartbeat_at) if last_heartbeat_at else ""
    key = f"node-offline:{node.pk}:{since}"
    data = {
        "node_id": str(node.pk),
        "hostname": node.hostname,
        "last_heartbeat_at": since or None,
        "reason": reason,
    }
    with transaction.atomic():
        event_emit(
            user_id=provider.owner_id, type=EventType.NODE_OFFLINE, dedupe_key=key, data=data
        )
        email_once(
            key=key, user=provider.owner, template="node_offline", context={"node": node, **data}
        )


def balances_low_notify(*, now: datetime | None = None) -> int:
    """A `balance.low` webhook for each user whose balance covers less than
    LOW_BALANCE_WARNING_MINUTES of their running pods, at most once a day (the same rule as
    the metering tick's warning mail). Returns how many events were recorded."""
    now = now or timezone.now()
    minutes = settings.LOW_BALANCE_WARNING_MINUTES
    burn: dict[Any, int] = dict(
        Pod.objects.filter(status=PodStatus.RUNNING)
        .values("owner_id")
        .annotate(rate=Sum(Coalesce(F("price_per_gpu_hour"), 0) * Greatest(F("gpu_count"), 1)))
        .values_list("owner_id", "rate")
    )
    if not burn:
        return 0
    floor = wallet_floor()
    sent = 0
    wallets = LedgerAccount.objects.filter(Q(kind=AccountKind.USER_WALLET), user_id__in=list(burn))
    for wallet in wallets.values("user_id", "balance"):
        need = burn[wallet["user_id"]] * minutes // 60
        if wallet["balance"] - floor >= need:
            continue
        sent += event_emit(
            user_id=wallet["user_id"],
            type=EventType.BALANCE_LOW,
            dedupe_key=f"balance-low:{wallet['user_id']}:{now:%Y-%m-%d}",
            data={
                "balance_usd": micros_to_usd(wallet["balance"]),
                "burn_usd_per_hour": micros_to_usd(burn[wallet["user_id"]]),
                "minutes_left": max(0, (wallet["balance"] - floor) * 60 // burn[wallet["user_id"]])
                if burn[wallet["user_id"]]
                else None,
            },
        )
    return sent


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")

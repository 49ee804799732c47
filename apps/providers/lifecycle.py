"""The payout state machine, in one place: which moves are legal, and the event each leaves.

REQUESTED → APPROVED → PROCESSING → SENT → PAID
REQUESTED → REJECTED;  APPROVED / PROCESSING / SENT → FAILED
(PROCESSING → APPROVED when a send must be retried later.)"""

from django.utils import timezone

from apps.accounts.models import User
from apps.providers.models import Payout, PayoutEvent, PayoutStatus

S = PayoutStatus
ALLOWED: dict[str, frozenset[str]] = {
    S.REQUESTED: frozenset({S.APPROVED, S.REJECTED}),
    S.APPROVED: frozenset({S.PROCESSING, S.FAILED}),
    S.PROCESSING: frozenset({S.SENT, S.APPROVED, S.FAILED}),
    S.SENT: frozenset({S.PAID, S.FAILED}),
    S.PAID: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
}
FINAL = frozenset({S.PAID, S.FAILED, S.REJECTED})


class IllegalPayoutTransitionError(Exception):
    def __init__(self, payout: Payout, to: str) -> None:
        super().__init__(f"payout {payout.pk} cannot go from {payout.status} to {to}")


def payout_transition(
    payout: Payout,
    to: str,
    *,
    reason: str,
    actor: User | None = None,
    extra_fields: tuple[str, ...] = (),
) -> None:
    """Move a locked payout to `to`, saving the status (and `extra_fields` the caller set)
    and recording the event."""
    if to not in ALLOWED[payout.status]:
        raise IllegalPayoutTransitionError(payout, to)
    before = payout.status
    payout.status = to
    payout.status_reason = reason[:500]
    fields = ["status", "status_reason", *extra_fields]
    if to in FINAL:
        payout.finished_at = timezone.now()
        fields.append("finished_at")
    payout.save(update_fields=fields)
    PayoutEvent.objects.create(
        payout=payout, from_status=before, to_status=to, reason=reason[:500], actor=actor
    )

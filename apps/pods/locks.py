"""Row locks of the pods app, taken in one order: a pod before its volume, and both before any
node row (apps.nodes.locks) or ledger account (apps.billing.locks, always last)."""

import uuid

from apps.pods.models import Pod, Volume


def lock_pod(pod_id: uuid.UUID | str) -> Pod | None:
    # Serialises a pod's status changes: the owner's stop, the agent's report of its
    # container, the offline sweep and sourcing's rental updates must not each move it from
    # the same stale status (a stopped pod coming back RUNNING, or billed twice at its end).
    return Pod.objects.select_for_update().filter(pk=pod_id).first()


def lock_volume(volume_id: uuid.UUID | str) -> Volume | None:
    # Serialises attach, delete and quota enforcement of one volume: a volume must not be
    # deleted while a pod attaches it, nor attached to two pods at once.
    return Volume.objects.select_for_update().filter(pk=volume_id).first()


def lock_volume_for_billing(volume_id: uuid.UUID | str) -> Volume | None:
    # Storage billing: two ticks must not both charge one volume's minutes. A tick skips a
    # volume another holds (None) rather than wait: that one bills it. Only the volume row is
    # locked; its owner and node come along for reading.
    return (
        Volume.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("owner", "node")
        .filter(pk=volume_id)
        .first()
    )

"""What the pods app asks of sourcing for a pod that is an upstream container
(settings.POD_UPSTREAM_BACKEND; see apps.pods.upstream)."""

import logging
import uuid

from apps.pods.models import Pod
from apps.pods.upstream import UpstreamLogs
from apps.sourcing.services.containers import pod_logs as _pod_logs
from apps.sourcing.tasks import release_pod

logger = logging.getLogger(__name__)


def pod_release(*, pod_id: uuid.UUID) -> None:
    """Terminate the stopped pod's container now; should it fail, the provisioning tick
    terminates it (it retries TERMINATING rentals and ended pods' rentals every pass)."""
    try:
        release_pod.apply_async(args=[str(pod_id)], expires=60)
    except Exception:  # noqa: BLE001 - the tick is the fallback
        logger.warning("could not dispatch the release of pod %s; the tick will", pod_id)


def pod_logs(*, pod: Pod, tail: int) -> UpstreamLogs:
    return _pod_logs(pod=pod, tail=tail)

"""The scheduler's upstream capacity source (apps.pods.scheduler POD_CAPACITY_SOURCES): a
pending GPU pod that no node of ours fits gets a machine rented for it, when sourcing and
auto-provisioning are switched on, within SOURCING_MAX_INSTANCES, and only from an offer
whose price with our markup fits the pod's price cap. Runs inside the scheduling pass's
transaction: it only records the request; the rent happens in the provisioning tick."""

from django.conf import settings
from django.db import connection

from apps.pods.models import Pod, PodCloud
from apps.pods.scheduler import BatchOutcome, CapacityView
from apps.sourcing.models import LIVE_STATUSES, InstanceStatus, ProvisionedInstance
from apps.sourcing.offer_book import book_offers
from apps.sourcing.ranking import Strategy
from apps.sourcing.services import instance_request, sourcing_on
from apps.sourcing.services.provisioning import pod_price_cap

ADVISORY_LOCK_KEY = 0x5EC0_0001  # sourcing: the live-instance count


def upstream_clouds(pods: list[Pod], capacity: CapacityView) -> BatchOutcome:
    outcome = BatchOutcome()
    if not sourcing_on():
        return outcome
    # `cloud: own` never goes upstream
    gpu_pods = [p for p in pods if p.gpu_count > 0 and p.cloud != PodCloud.OWN]
    if not gpu_pods:
        return outcome
    if connection.vendor == "postgresql":
        # Two scheduling passes at once must not both see room for the last instance: the
        # count and the requests below are serialised (until the pass's transaction ends).
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
    room = (
        settings.SOURCING_MAX_INSTANCES
        - ProvisionedInstance.objects.filter(status__in=LIVE_STATUSES).count()
    )
    waiting = set(
        ProvisionedInstance.objects.filter(pod__in=gpu_pods, status__in=LIVE_STATUSES)
        .exclude(status=InstanceStatus.TERMINATING)  # an interrupted pod's old rental
        .values_list("pod_id", flat=True)
    )
    for pod in gpu_pods:
        if room <= 0:
            break
        if pod.pk in waiting:
            continue  # its machine is on the way
        best = book_offers(
            gpu_model=pod.gpu_model,
            gpu_count=pod.gpu_count,
            min_vram_gb=-(-pod.min_vram_mb // 1024),
            max_price_per_gpu_hour=pod_price_cap(pod),
            strategy=Strategy(pod.strategy),
            spot=pod.interruptible,
            limit=1,
        )
        if not best:
            continue
        instance_request(pod=pod, expected_price_per_gpu_hour=best[0].our_price_per_gpu_hour)
        outcome.placed.add(pod.pk)
        room -= 1
    return outcome

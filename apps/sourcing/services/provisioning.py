"""Renting a machine for a pod: the request (inside the scheduler's transaction), the rent with
failover (outside any transaction), and activation when its agent registers."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.money import micros_to_usd
from apps.core.secrets import secret_issue
from apps.nodes.models import Node
from apps.pods import upstream as pod_upstream
from apps.pods.models import Pod, PodStatus
from apps.sourcing.adapters import ADAPTERS
from apps.sourcing.adapters.base import (
    ExecutionModel,
    InstanceConfig,
    PortSpec,
    WorkloadSpec,
)
from apps.sourcing.lifecycle import instance_transition
from apps.sourcing.locks import lock_instance, lock_instance_of_machine
from apps.sourcing.models import (
    ProvisionedInstance,
)
from apps.sourcing.multi import FailoverResult, MultiProviderService, NoOfferError
from apps.sourcing.offer_book import book_offers
from apps.sourcing.ranking import PricedOffer, Strategy
from apps.sourcing.registration import INSTANCE_TOKEN_PREFIX
from apps.sourcing.registry import make_service, publish_health
from apps.sourcing.services.common import (
    WAITING,
    S,
    launch_stats_bump,
    sourcing_on,
)

logger = logging.getLogger(__name__)


def instance_request(*, pod: Pod, expected_price_per_gpu_hour: int) -> ProvisionedInstance:
    """Record that `pod` (locked by the caller) needs an upstream machine, and move the pod
    to PROVISIONING. The rent itself happens in `instance_provision`, outside the
    scheduler's transaction."""
    instance = ProvisionedInstance.objects.create(
        label=f"gco-{uuid.uuid4().hex[:16]}",
        gpu_model=pod.gpu_model,
        gpu_count=pod.gpu_count,
        pod=pod,
        max_price_per_gpu_hour=pod_price_cap(pod),
        spot=pod.interruptible,
    )
    instance.events.create(from_status=S.PENDING, to_status=S.PENDING, reason=f"for pod {pod.pk}")
    pod_upstream.pod_rental_requested(
        pod=pod,
        reason=(
            f"renting {pod.gpu_count}× {pod.gpu_model} from an upstream cloud "
            f"(about ${micros_to_usd(expected_price_per_gpu_hour)}/GPU-h)"
        ),
    )
    if settings.SOURCING_DISPATCH_ON_REQUEST:
        transaction.on_commit(partial(_dispatch_provision, instance.pk))
    return instance


def pod_price_cap(pod: Pod) -> int | None:
    """The most our price may be per GPU-hour: the bid cap for a spot pod, else the cap."""
    if pod.interruptible and pod.bid_cap_per_gpu_hour is not None:
        if pod.price_cap_per_gpu_hour is not None:
            return min(pod.bid_cap_per_gpu_hour, pod.price_cap_per_gpu_hour)
        return pod.bid_cap_per_gpu_hour
    return pod.price_cap_per_gpu_hour


def workload_spec(pod: Pod) -> WorkloadSpec:
    """The pod as a container cloud runs it (its own image, command, env, ports, disk)."""
    return WorkloadSpec(
        image=pod.image,
        command=tuple(str(c) for c in pod.command) if pod.command else None,
        env={str(k): str(v) for k, v in (pod.env or {}).items()},
        ports=tuple(
            PortSpec(int(p["container_port"]), str(p.get("protocol") or "tcp")) for p in pod.ports
        ),
        disk_gb=pod.disk_gb,
    )


def _dispatch_provision(instance_id: uuid.UUID) -> None:
    """Start the rent now rather than at the next tick. If the broker cannot take the task,
    the provisioning tick (every 10 s) does the same work."""
    # By name: sourcing.tasks imports these services, so they do not import it back.
    try:
        current_app.signature("sourcing.provision_instance").apply_async(
            args=[str(instance_id)], expires=60
        )
    except Exception:  # noqa: BLE001 - the tick is the fallback
        logger.warning("could not dispatch provisioning of %s; the tick will", instance_id)


def bootstrap_script(*, token: str) -> str:
    return settings.SOURCING_AGENT_BOOTSTRAP.replace(
        "{server}", settings.SOURCING_SERVER_URL
    ).replace("{token}", token)


async def _failover(
    service: MultiProviderService,
    instance: ProvisionedInstance,
    config: InstanceConfig,
    offers: list[PricedOffer] | None,
) -> FailoverResult:
    try:
        return await service.create_instance_with_failover(
            instance.gpu_model,
            config,
            instance.max_price_per_gpu_hour,
            gpu_count=instance.gpu_count,
            offers=offers,
        )
    finally:
        await service.aclose()


def instance_provision(*, instance_id: uuid.UUID) -> ProvisionedInstance | None:
    """Rent a machine for a PENDING instance: walk the offer book's offers with failover."""
    with transaction.atomic():
        instance = lock_instance(instance_id, skip_locked=True)
        if instance is None or instance.status != S.PENDING:
            return instance
        if not sourcing_on():
            instance_transition(instance=instance, to=S.FAILED, reason="sourcing is switched off")
            pod_upstream.pod_rental_failed(
                pod_id=instance.pod_id, reason="upstream provisioning is switched off"
            )
            return instance
        if (
            instance.pod_id is None
            or not Pod.objects.filter(pk=instance.pod_id, status=PodStatus.PROVISIONING).exists()
        ):
            # Its pod was stopped (or placed elsewhere) before we rented anything: rent nothing.
            instance_transition(instance=instance, to=S.FAILED, reason="its pod no longer waits")
            return instance
        issued = secret_issue(prefix=INSTANCE_TOKEN_PREFIX)
        now = timezone.now()
        instance.token_prefix = issued.display_prefix
        instance.token_digest = issued.digest
        instance.create_sent_at = now
        instance.registration_deadline = now + timedelta(
            seconds=settings.SOURCING_REGISTRATION_TIMEOUT_S
        )
        instance_transition(
            instance=instance,
            to=S.CREATING,
            reason="asking upstream clouds",
            extra_fields=(
                "token_prefix",
                "token_digest",
                "create_sent_at",
                "registration_deadline",
            ),
        )
    pod = Pod.objects.get(pk=instance.pod_id)
    # One config for every provider the failover may try: a VM cloud runs the bootstrap
    # (our agent), a container cloud runs the pod itself (adapters' execution_model).
    config = InstanceConfig(
        label=instance.label,
        image=settings.SOURCING_INSTANCE_IMAGE,
        startup_script=bootstrap_script(token=issued.raw),
        ssh_key_name=settings.SOURCING_LAMBDA_SSH_KEY_NAME,
        env={"GCO_INSTANCE": instance.label},
        workload=workload_spec(pod),
        spot=instance.spot,
    )
    offers = (
        book_offers(
            gpu_model=instance.gpu_model,
            gpu_count=instance.gpu_count,
            max_price_per_gpu_hour=instance.max_price_per_gpu_hour,
            strategy=Strategy(pod.strategy),
            spot=instance.spot,
            providers=_providers_for(pod),
            limit=12,
        )
        or None
    )  # an empty book: search live
    try:
        result = asyncio.run(_failover(make_service(), instance, config, offers))
    except NoOfferError as exc:
        publish_health()
        with transaction.atomic():
            locked = lock_instance(instance.pk)
            assert locked is not None  # noqa: S101 - instances are never deleted
            locked.attempts = [a.__dict__ for a in exc.attempts]
            locked.save(update_fields=["attempts"])
            instance_transition(instance=locked, to=S.FAILED, reason=str(exc))
            for attempt in exc.attempts:
                if attempt.outcome not in ("skipped",):
                    launch_stats_bump(attempt.provider, locked.gpu_model, attempts=1, failures=1)
            pod_upstream.pod_rental_failed(
                pod_id=locked.pod_id, reason=f"no upstream capacity: {exc}"
            )
        return locked
    publish_health()
    return _record_created(instance.pk, result)


def _providers_for(pod: Pod) -> list[str] | None:
    """A spot pod can only go to clouds with a spot market."""
    if not pod.interruptible:
        return None
    return [name for name, adapter in ADAPTERS.items() if adapter.supports_spot]


def _record_created(instance_id: uuid.UUID, result: FailoverResult) -> ProvisionedInstance:
    offer = result.offer
    with transaction.atomic():
        instance = lock_instance(instance_id)
        assert instance is not None  # noqa: S101
        now = timezone.now()
        instance.provider = result.instance.provider
        instance.provider_instance_id = result.instance.instance_id
        instance.offer_id = offer.offer.offer_id[:255]
        instance.upstream_price_per_hour = (
            result.instance.price_per_hour or offer.offer.price_per_hour
        )
        instance.price_per_gpu_hour = offer.our_price_per_gpu_hour
        instance.markup_percent = offer.markup_percent
        instance.upstream_created_at = now
        instance.cost_accrued_until = now
        instance.attempts = [a.__dict__ for a in result.attempts]
        adapter = ADAPTERS.get(instance.provider)
        model = adapter.execution_model if adapter is not None else ExecutionModel.VM
        instance.execution_model = model.value
        fields = (
            "execution_model",
            "provider",
            "provider_instance_id",
            "offer_id",
            "upstream_price_per_hour",
            "price_per_gpu_hour",
            "markup_percent",
            "upstream_created_at",
            "cost_accrued_until",
            "attempts",
        )
        if instance.status == S.CREATING:
            instance_transition(
                instance=instance,
                to=S.STARTING,
                reason=f"rented {result.instance.provider}:{result.instance.instance_id}",
                extra_fields=fields,
            )
        else:
            instance.save(update_fields=list(fields))
        if model == ExecutionModel.CONTAINER and instance.pod_id is not None:
            pod_upstream.pod_upstream_starting(
                pod_id=instance.pod_id,
                price_per_gpu_hour=instance.price_per_gpu_hour or 0,
                reason=(
                    f"its container is starting on an upstream container cloud "
                    f"(${micros_to_usd(instance.price_per_gpu_hour or 0)}/GPU-h)"
                ),
            )
        for attempt in result.attempts:
            if attempt.outcome in ("created", "adopted"):
                launch_stats_bump(attempt.provider, instance.gpu_model, attempts=1, successes=1)
            elif attempt.outcome not in ("skipped", "unresolved"):
                launch_stats_bump(attempt.provider, instance.gpu_model, attempts=1, failures=1)
    return instance


def instance_activate(*, node: Node) -> ProvisionedInstance | None:
    """Our agent on a rented machine registered: the instance is ACTIVE and its node takes
    pods at the instance's price (upstream + markup)."""
    if not node.provider_instance_id:
        return None
    with transaction.atomic():
        instance = lock_instance_of_machine(node.provider_instance_id, [*WAITING, S.ACTIVE])
        if instance is None:
            return None
        Node.objects.filter(pk=node.pk).update(price_per_gpu_hour=instance.price_per_gpu_hour)
        instance.node = node
        if instance.status == S.ACTIVE:
            instance.save(update_fields=["node", "updated_at"])
            return instance
        now = timezone.now()
        instance.active_at = now
        instance_transition(
            instance=instance,
            to=S.ACTIVE,
            reason=f"agent registered as node {node.pk}",
            extra_fields=("node", "active_at"),
        )
        waited = (now - (instance.create_sent_at or now)).total_seconds()
        launch_stats_bump(
            instance.provider, instance.gpu_model, activations=1, seconds_to_active_total=waited
        )
    return instance

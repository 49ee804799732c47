"""ProvisioningService (DESIGN.md §4, §7): rent a machine for a pod that no node of ours
fits, watch it boot until our agent registers from it, terminate it when it is no longer
needed, and book what it cost.

Upstream HTTP never runs inside a database transaction: each step claims its rows in one
short transaction (status moves first, so a second worker skips them), talks to the
provider, then records the answer in another. Every step is safe to run twice at once and
safe to kill halfway: a create killed before its answer was recorded is found again by its
label, and reconciliation terminates whatever nobody tracks."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account
from apps.core.money import micros_to_usd, prorate
from apps.core.secrets import secret_issue
from apps.nodes.lifecycle import node_transition
from apps.nodes.models import Node, NodeStatus
from apps.pods.lifecycle import pod_transition
from apps.pods.models import ON_NODE_STATUSES, Pod, PodStatus
from apps.sourcing.adapters.base import (
    AlreadyGoneError,
    Instance,
    InstanceConfig,
    InstanceState,
    ProviderError,
)
from apps.sourcing.lifecycle import instance_transition
from apps.sourcing.models import (
    BILLED_STATUSES,
    LIVE_STATUSES,
    InstanceStatus,
    LaunchStat,
    OrphanInstance,
    ProvisionedInstance,
    UpstreamCharge,
)
from apps.sourcing.multi import FailoverResult, MultiProviderService, NoOfferError
from apps.sourcing.offer_book import book_offers
from apps.sourcing.ranking import PricedOffer
from apps.sourcing.registration import INSTANCE_TOKEN_PREFIX
from apps.sourcing.registry import configured_providers, make_service, publish_health

logger = logging.getLogger(__name__)
S = InstanceStatus
WAITING = (S.CREATING, S.STARTING, S.INSTALLING, S.WAITING_REGISTRATION)
LOST_CREATE_AFTER = timedelta(seconds=120)


def sourcing_on() -> bool:
    return bool(settings.SOURCING_ENABLED and settings.AUTO_PROVISIONING_ENABLED)


def _lock(instance_id: uuid.UUID, *, skip_locked: bool = False) -> ProvisionedInstance | None:
    return (
        ProvisionedInstance.objects.select_for_update(skip_locked=skip_locked)
        .filter(pk=instance_id)
        .first()
    )


# --- request (from the scheduler, inside its transaction) ------------------------------------


def instance_request(*, pod: Pod, expected_price_per_gpu_hour: int) -> ProvisionedInstance:
    """Record that `pod` (locked by the caller) needs an upstream machine, and move the pod
    to PROVISIONING. The rent itself happens in `instance_provision`, outside the
    scheduler's transaction."""
    instance = ProvisionedInstance.objects.create(
        label=f"gco-{uuid.uuid4().hex[:16]}",
        gpu_model=pod.gpu_model,
        gpu_count=pod.gpu_count,
        pod=pod,
        max_price_per_gpu_hour=pod.price_cap_per_gpu_hour,
    )
    instance.events.create(from_status=S.PENDING, to_status=S.PENDING, reason=f"for pod {pod.pk}")
    pod_transition(
        pod=pod,
        to=PodStatus.PROVISIONING,
        reason=(
            f"renting {pod.gpu_count}× {pod.gpu_model} from an upstream cloud "
            f"(about ${micros_to_usd(expected_price_per_gpu_hour)}/GPU-h)"
        ),
    )
    return instance


def _pod_back_to_pending(pod_id: uuid.UUID | None, reason: str) -> None:
    if pod_id is None:
        return
    pod = Pod.objects.select_for_update().filter(pk=pod_id).first()
    if pod is not None and pod.status == PodStatus.PROVISIONING:
        pod_transition(pod=pod, to=PodStatus.PENDING, reason=reason)


def _bump_stats(provider: str, gpu_model: str, **deltas: int | float) -> None:
    stat, _ = LaunchStat.objects.get_or_create(provider=provider, gpu_model=gpu_model)
    LaunchStat.objects.filter(pk=stat.pk).update(**{k: F(k) + v for k, v in deltas.items()})


# --- provision -------------------------------------------------------------------------------


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
        instance = _lock(instance_id, skip_locked=True)
        if instance is None or instance.status != S.PENDING:
            return instance
        if not sourcing_on():
            instance_transition(instance=instance, to=S.FAILED, reason="sourcing is switched off")
            _pod_back_to_pending(instance.pod_id, "upstream provisioning is switched off")
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
    config = InstanceConfig(
        label=instance.label,
        image=settings.SOURCING_INSTANCE_IMAGE,
        startup_script=bootstrap_script(token=issued.raw),
        ssh_key_name=settings.SOURCING_LAMBDA_SSH_KEY_NAME,
        env={"GCO_INSTANCE": instance.label},
    )
    offers = (
        book_offers(
            gpu_model=instance.gpu_model,
            gpu_count=instance.gpu_count,
            max_price_per_gpu_hour=instance.max_price_per_gpu_hour,
            limit=12,
        )
        or None
    )  # an empty book: search live
    try:
        result = asyncio.run(_failover(make_service(), instance, config, offers))
    except NoOfferError as exc:
        publish_health()
        with transaction.atomic():
            locked = _lock(instance.pk)
            assert locked is not None  # noqa: S101 - instances are never deleted
            locked.attempts = [a.__dict__ for a in exc.attempts]
            locked.save(update_fields=["attempts"])
            instance_transition(instance=locked, to=S.FAILED, reason=str(exc))
            for attempt in exc.attempts:
                if attempt.outcome not in ("skipped",):
                    _bump_stats(attempt.provider, locked.gpu_model, attempts=1, failures=1)
            _pod_back_to_pending(locked.pod_id, f"no upstream capacity: {exc}")
        return locked
    publish_health()
    return _record_created(instance.pk, result)


def _record_created(instance_id: uuid.UUID, result: FailoverResult) -> ProvisionedInstance:
    offer = result.offer
    with transaction.atomic():
        instance = _lock(instance_id)
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
        fields = (
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
        for attempt in result.attempts:
            if attempt.outcome in ("created", "adopted"):
                _bump_stats(attempt.provider, instance.gpu_model, attempts=1, successes=1)
            elif attempt.outcome not in ("skipped", "unresolved"):
                _bump_stats(attempt.provider, instance.gpu_model, attempts=1, failures=1)
    return instance


# --- registration ----------------------------------------------------------------------------


def instance_activate(*, node: Node) -> ProvisionedInstance | None:
    """Our agent on a rented machine registered: the instance is ACTIVE and its node takes
    pods at the instance's price (upstream + markup)."""
    if not node.provider_instance_id:
        return None
    with transaction.atomic():
        instance = (
            ProvisionedInstance.objects.select_for_update()
            .filter(provider_instance_id=node.provider_instance_id, status__in=[*WAITING, S.ACTIVE])
            .order_by("-created_at")
            .first()
        )
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
        _bump_stats(
            instance.provider, instance.gpu_model, activations=1, seconds_to_active_total=waited
        )
    return instance


# --- the tick: drive every instance ----------------------------------------------------------


@dataclass
class TickResult:
    provisioned: int = 0
    advanced: int = 0
    failed: int = 0
    terminated: int = 0
    pods_released: int = 0


async def _get_all(
    service, wanted: list[tuple[str, str]]
) -> dict[tuple[str, str], Instance | Exception]:
    async def one(provider: str, iid: str) -> Instance | Exception:
        try:
            return await service.adapters[provider].get_instance(iid)
        except (ProviderError, KeyError) as exc:
            return exc

    try:
        answers = await asyncio.gather(*(one(p, i) for p, i in wanted))
    finally:
        await service.aclose()
    return dict(zip(wanted, answers, strict=True))


def provisioning_tick(*, now: datetime | None = None) -> TickResult:
    """One pass: rent for PENDING instances, follow booting ones, fail the ones whose agent
    never registered, hand ACTIVE machines to their pods, retire idle ones."""
    result = TickResult()
    for instance_id in ProvisionedInstance.objects.filter(status=S.PENDING).values_list(
        "pk", flat=True
    )[:20]:
        instance = instance_provision(instance_id=instance_id)
        if instance is not None and instance.status != S.FAILED:
            result.provisioned += 1
    now = now or timezone.now()
    booting = list(
        ProvisionedInstance.objects.filter(status__in=WAITING).exclude(provider_instance_id="")
    )
    providers = set(configured_providers())
    wanted = [(i.provider, i.provider_instance_id) for i in booting if i.provider in providers]
    answers = asyncio.run(_get_all(make_service(), wanted)) if wanted else {}
    for instance in booting:
        answer = answers.get((instance.provider, instance.provider_instance_id))
        if isinstance(answer, Instance):
            result.advanced += _follow(instance, answer)
        elif isinstance(answer, AlreadyGoneError):
            _close_out(instance.pk, "the provider no longer has it")
            result.failed += 1
    for instance in ProvisionedInstance.objects.filter(
        status__in=WAITING, registration_deadline__lt=now
    ):
        instance_fail(
            instance_id=instance.pk,
            reason=(
                f"the agent did not register within {settings.SOURCING_REGISTRATION_TIMEOUT_S} s"
            ),
        )
        result.failed += 1
    _resolve_lost_creates(now)
    result.terminated += _abandon_unwanted(now)
    result.pods_released += _release_pods()
    result.terminated += _retire_idle(now)
    for instance_id, why in ProvisionedInstance.objects.filter(status=S.TERMINATING).values_list(
        "pk", "status_reason"
    ):
        final = S.FAILED if why.startswith("failing:") else S.TERMINATED
        if instance_terminate(instance_id=instance_id, reason="retrying terminate", final=final):
            result.terminated += 1
    return result


def _follow(instance: ProvisionedInstance, upstream: Instance) -> int:
    """Move a booting instance along what its provider reports."""
    with transaction.atomic():
        locked = _lock(instance.pk, skip_locked=True)
        if locked is None or locked.status not in WAITING:
            return 0
        locked.upstream_status = upstream.provider_status[:64]
        locked.last_seen_upstream_at = timezone.now()
        locked.save(update_fields=["upstream_status", "last_seen_upstream_at"])
        if upstream.state == InstanceState.RUNNING and locked.status in (S.CREATING, S.STARTING):
            instance_transition(
                instance=locked,
                to=S.INSTALLING,
                reason="machine up: the startup script installs the agent",
            )
            return 1
        if upstream.state == InstanceState.RUNNING and locked.status == S.INSTALLING:
            instance_transition(
                instance=locked,
                to=S.WAITING_REGISTRATION,
                reason="waiting for the agent to register",
            )
            return 1
    if upstream.state == InstanceState.FAILED:
        instance_fail(
            instance_id=instance.pk, reason=f"the provider reports it failed: {upstream.message}"
        )
        return 1
    if upstream.state == InstanceState.TERMINATED:
        _close_out(instance.pk, "terminated upstream")
        return 1
    return 0


def instance_fail(*, instance_id: uuid.UUID, reason: str) -> None:
    """FAILED, the pod back to PENDING, and the machine terminated upstream."""
    with transaction.atomic():
        instance = _lock(instance_id)
        if instance is None or instance.status in (S.FAILED, S.TERMINATED):
            return
        if instance.status == S.TERMINATING:
            return
        _bump_stats(instance.provider or "unknown", instance.gpu_model, failures=1)
        instance_transition(instance=instance, to=S.TERMINATING, reason=f"failing: {reason}")
        _pod_back_to_pending(instance.pod_id, f"upstream machine failed: {reason}")
    instance_terminate(instance_id=instance_id, reason=reason, final=S.FAILED)


def _close_out(instance_id: uuid.UUID, reason: str) -> None:
    """The provider no longer has it: stop the cost where we last saw it."""
    with transaction.atomic():
        instance = _lock(instance_id)
        if instance is None or instance.status in (S.TERMINATED, S.FAILED):
            return
        instance.terminated_at = instance.last_seen_upstream_at or timezone.now()
        if instance.cost_accrued_until and instance.terminated_at < instance.cost_accrued_until:
            instance.terminated_at = instance.cost_accrued_until
        instance_transition(
            instance=instance, to=S.TERMINATED, reason=reason, extra_fields=("terminated_at",)
        )
        _pod_back_to_pending(instance.pod_id, f"upstream machine gone: {reason}")
        _retire_node(instance, reason)
    accrue_upstream_costs(instance_ids=[instance_id])


def _retire_node(instance: ProvisionedInstance, reason: str) -> None:
    if instance.node_id is None:
        return
    node = Node.objects.select_for_update().filter(pk=instance.node_id).first()
    if node is not None and node.status != NodeStatus.RETIRED:
        node_transition(
            node=node, to=NodeStatus.RETIRED, reason=f"upstream instance ended: {reason}"[:255]
        )


def _abandon_unwanted(now: datetime) -> int:
    """A machine still booting whose pod has ended (stopped, failed, deleted) is not kept
    booting until its deadline: terminated now, unless instances are kept warm."""
    if settings.SOURCING_IDLE_KEEP_S:
        return 0
    count = 0
    for instance_id in ProvisionedInstance.objects.filter(
        status__in=WAITING,
        pod__status__in=(PodStatus.STOPPED, PodStatus.FAILED, PodStatus.TERMINATED),
    ).values_list("pk", flat=True):
        if instance_terminate(instance_id=instance_id, reason="its pod ended before it was ready"):
            count += 1
    return count


def _release_pods() -> int:
    """Pods waiting on an ACTIVE instance whose node is ONLINE go back to PENDING and are
    scheduled at once (onto that node, the cheapest fit for them)."""
    from apps.pods.scheduler import schedule_pending

    released = []
    for instance in ProvisionedInstance.objects.filter(
        status=S.ACTIVE, node__status=NodeStatus.ONLINE, pod__status=PodStatus.PROVISIONING
    ):
        if instance.pod_id is None:
            continue
        with transaction.atomic():
            pod = Pod.objects.select_for_update().filter(pk=instance.pod_id).first()
            if pod is not None and pod.status == PodStatus.PROVISIONING:
                pod_transition(pod=pod, to=PodStatus.PENDING, reason="upstream machine ready")
                released.append(pod.pk)
    if released:
        schedule_pending(pod_ids=released)
    return len(released)


def _retire_idle(now: datetime) -> int:
    """An ACTIVE instance with no pod on its node (and none waiting for it) is idle; after
    SOURCING_IDLE_KEEP_S it is terminated."""
    count = 0
    keep = timedelta(seconds=settings.SOURCING_IDLE_KEEP_S)
    for instance in ProvisionedInstance.objects.filter(status=S.ACTIVE, node__isnull=False):
        assert instance.node_id is not None  # noqa: S101 - filtered above
        busy = Pod.objects.filter(
            node_id=instance.node_id, status__in=ON_NODE_STATUSES
        ).exists() or (
            instance.pod_id is not None
            and Pod.objects.filter(
                pk=instance.pod_id, status__in=(PodStatus.PROVISIONING, PodStatus.PENDING)
            ).exists()
        )
        if busy:
            if instance.idle_since is not None:
                ProvisionedInstance.objects.filter(pk=instance.pk).update(idle_since=None)
            continue
        if instance.idle_since is None:
            ProvisionedInstance.objects.filter(pk=instance.pk).update(idle_since=now)
            instance.idle_since = now
        if now - instance.idle_since >= keep:
            with transaction.atomic():
                locked = _lock(instance.pk, skip_locked=True)
                if locked is None or locked.status != S.ACTIVE:
                    continue
                instance_transition(
                    instance=locked, to=S.TERMINATING, reason="idle: no pod needs it"
                )
            if instance_terminate(instance_id=instance.pk, reason="idle"):
                count += 1
    return count


async def _terminate(service: MultiProviderService, provider: str, instance_id: str) -> None:
    try:
        await service.adapters[provider].terminate_instance(instance_id)
    finally:
        await service.aclose()


def instance_terminate(*, instance_id: uuid.UUID, reason: str, final: str = S.TERMINATED) -> bool:
    """Terminate upstream (an instance already gone counts as terminated), then close it
    out. A failed call leaves it TERMINATING for the next tick."""
    instance = ProvisionedInstance.objects.filter(pk=instance_id).first()
    if instance is None or instance.status in (S.TERMINATED, S.FAILED):
        return False
    if instance.status != S.TERMINATING:
        with transaction.atomic():
            locked = _lock(instance_id)
            if locked is None or locked.status in (S.TERMINATED, S.FAILED, S.TERMINATING):
                return False
            instance_transition(instance=locked, to=S.TERMINATING, reason=reason)
            instance = locked
    if instance.provider_instance_id:
        if instance.provider not in configured_providers():
            # No key for it any more: we cannot terminate it, so we must not call it ended.
            logger.error(
                "cannot terminate %s: provider %s not configured", instance, instance.provider
            )
            return False
        try:
            asyncio.run(
                _terminate(
                    make_service([instance.provider]),
                    instance.provider,
                    instance.provider_instance_id,
                )
            )
        except ProviderError as exc:
            logger.warning("terminate %s failed: %s", instance.label, exc)
            return False
    with transaction.atomic():
        locked = _lock(instance_id)
        if locked is None or locked.status != S.TERMINATING:
            return False
        locked.terminated_at = timezone.now()
        instance_transition(
            instance=locked,
            to=final,
            reason=f"terminated upstream: {reason}",
            extra_fields=("terminated_at",),
        )
        _retire_node(locked, reason)
    accrue_upstream_costs(instance_ids=[instance_id])
    return True


def _resolve_lost_creates(now: datetime) -> None:
    """A CREATING instance with no upstream id long after its create was sent lost its answer
    (or its worker died): find it by label; found → adopted, not found → FAILED."""
    stuck = ProvisionedInstance.objects.filter(
        status=S.CREATING, provider_instance_id="", create_sent_at__lt=now - LOST_CREATE_AFTER
    )
    for instance in stuck:
        found = asyncio.run(_find_label(make_service(), instance.label))
        if found is None:
            instance_fail(instance_id=instance.pk, reason="create lost and nothing found by label")
            continue
        with transaction.atomic():
            locked = _lock(instance.pk)
            if locked is None or locked.status != S.CREATING or locked.provider_instance_id:
                continue
            locked.provider = found.provider
            locked.provider_instance_id = found.instance_id
            locked.upstream_price_per_hour = found.price_per_hour
            locked.cost_accrued_until = locked.create_sent_at
            instance_transition(
                instance=locked,
                to=S.STARTING,
                reason="adopted by label after a lost create",
                extra_fields=(
                    "provider",
                    "provider_instance_id",
                    "upstream_price_per_hour",
                    "cost_accrued_until",
                ),
            )


async def _find_label(service: MultiProviderService, label: str) -> Instance | None:
    try:
        for adapter in service.adapters.values():
            try:
                found = await adapter.find_by_label(label)
            except ProviderError:
                continue
            if found is not None:
                return found
        return None
    finally:
        await service.aclose()


# --- reconciliation --------------------------------------------------------------------------


@dataclass
class ReconcileResult:
    seen: int = 0
    orphans_flagged: int = 0
    orphans_terminated: int = 0
    closed_out: int = 0
    errors: dict[str, str] = field(default_factory=dict)


async def _list_all(service: MultiProviderService) -> dict[str, list[Instance] | Exception]:
    async def one(name: str) -> list[Instance] | Exception:
        try:
            return await service.adapters[name].list_instances()
        except ProviderError as exc:
            return exc

    try:
        names = list(service.adapters)
        return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
    finally:
        await service.aclose()


def reconcile(*, now: datetime | None = None) -> ReconcileResult:
    """Compare what each provider reports with what we track. Untracked instances are
    flagged, then terminated after SOURCING_ORPHAN_GRACE_S (a create in flight has that long
    to record its id). Tracked instances the provider no longer has are closed out."""
    now = now or timezone.now()
    result = ReconcileResult()
    if not settings.SOURCING_ENABLED:
        return result  # with sourcing off we touch nothing upstream that is not ours
    grace = timedelta(seconds=settings.SOURCING_ORPHAN_GRACE_S)
    listed = asyncio.run(_list_all(make_service()))
    for provider, answer in listed.items():
        if isinstance(answer, Exception):
            result.errors[provider] = str(answer)
            continue
        upstream = {i.instance_id: i for i in answer if i.state != InstanceState.TERMINATED}
        result.seen += len(upstream)
        tracked = dict(
            ProvisionedInstance.objects.filter(provider=provider)
            .exclude(provider_instance_id="")
            .values_list("provider_instance_id", "status")
        )
        in_flight_labels = set(
            ProvisionedInstance.objects.filter(
                status__in=(S.PENDING, S.CREATING), provider_instance_id=""
            ).values_list("label", flat=True)
        )
        for iid, inst in upstream.items():
            status = tracked.get(iid)
            if status is not None and status in LIVE_STATUSES:
                continue
            if inst.label in in_flight_labels:
                continue  # its create is being recorded right now
            orphan, created = OrphanInstance.objects.get_or_create(
                provider=provider, provider_instance_id=iid, defaults={"label": inst.label[:255]}
            )
            if created:
                result.orphans_flagged += 1
                logger.warning("orphan instance %s:%s (%s) flagged", provider, iid, inst.label)
            if now - orphan.first_seen_at >= grace and orphan.terminated_at is None:
                try:
                    asyncio.run(_terminate(make_service([provider]), provider, iid))
                except ProviderError as exc:
                    result.errors[f"{provider}:{iid}"] = str(exc)
                    continue
                OrphanInstance.objects.filter(pk=orphan.pk).update(terminated_at=timezone.now())
                result.orphans_terminated += 1
        for instance in ProvisionedInstance.objects.filter(
            provider=provider,
            status__in=[S.STARTING, S.INSTALLING, S.WAITING_REGISTRATION, S.ACTIVE],
        ).exclude(provider_instance_id=""):
            if instance.provider_instance_id not in upstream:
                _close_out(instance.pk, "no longer listed by the provider")
                result.closed_out += 1
            else:
                ProvisionedInstance.objects.filter(pk=instance.pk).update(last_seen_upstream_at=now)
    publish_health()
    return result


# --- upstream cost ---------------------------------------------------------------------------


def accrue_upstream_costs(
    *, now: datetime | None = None, instance_ids: list[uuid.UUID] | None = None
) -> int:
    """Book each rented instance's upstream cost since `cost_accrued_until` (up to now, or
    to its termination) against the platform's revenue: revenue −x, upstream cost +x. One
    UpstreamCharge per interval, unique per (instance, period_start); idempotent by key."""
    now = now or timezone.now()
    query = ProvisionedInstance.objects.filter(
        Q(status__in=BILLED_STATUSES) | Q(terminated_at__gt=F("cost_accrued_until")),
        cost_accrued_until__isnull=False,
        upstream_price_per_hour__isnull=False,
    )
    if instance_ids is not None:
        query = query.filter(pk__in=instance_ids)
    booked = 0
    for instance_id in query.values_list("pk", flat=True):
        with transaction.atomic():
            instance = _lock(instance_id, skip_locked=True)
            if instance is None or instance.cost_accrued_until is None:
                continue
            if instance.status not in BILLED_STATUSES and instance.terminated_at is None:
                continue
            end = min(now, instance.terminated_at) if instance.terminated_at else now
            start = instance.cost_accrued_until
            seconds = int((end - start).total_seconds())
            if seconds < 1:
                continue
            period_end = start + timedelta(seconds=seconds)
            amount = prorate(per_hour=instance.upstream_price_per_hour or 0, seconds=seconds)
            pod_id = (
                Pod.objects.filter(node_id=instance.node_id, status__in=ON_NODE_STATUSES)
                .values_list("pk", flat=True)
                .first()
                if instance.node_id
                else None
            ) or instance.pod_id
            tx_id = None
            if amount:
                tx, _ = ledger_post(
                    kind=TransactionKind.USAGE,
                    idempotency_key=f"upstream:{instance.pk}:{start.isoformat()}",
                    memo=(
                        f"upstream {instance.provider} {instance.gpu_count}× {instance.gpu_model}: "
                        f"{seconds} s at ${micros_to_usd(instance.upstream_price_per_hour or 0)}/h"
                    )[:255],
                    lines=[
                        (platform_account(AccountKind.PLATFORM_REVENUE), -amount),
                        (platform_account(AccountKind.UPSTREAM_COST), amount),
                    ],
                    metadata={"instance": str(instance.pk), "pod": str(pod_id) if pod_id else None},
                )
                tx_id = tx.pk
            UpstreamCharge.objects.create(
                instance=instance,
                pod_id=pod_id,
                provider=instance.provider,
                gpu_model=instance.gpu_model,
                period_start=start,
                period_end=period_end,
                seconds=seconds,
                price_per_hour=instance.upstream_price_per_hour or 0,
                amount=amount,
                transaction_id=tx_id,
            )
            instance.cost_accrued_until = period_end
            instance.save(update_fields=["cost_accrued_until"])
            booked += 1
    return booked


def margins_by(*, key: str) -> dict[str, dict[str, int]]:
    """Revenue, upstream cost and margin per pod, provider or GPU model (micro-dollars)."""
    from django.db.models import Sum

    from apps.pods.models import UsageRecord

    assert key in ("pod", "provider", "gpu_model")  # noqa: S101 - a programming error
    cost: dict[str, int] = defaultdict(int)
    revenue: dict[str, int] = defaultdict(int)
    sourced_pods = {}
    for row in UpstreamCharge.objects.values(key if key != "pod" else "pod_id").annotate(
        total=Sum("amount")
    ):
        cost[str(row[key if key != "pod" else "pod_id"])] += row["total"]
    # revenue of pods that ran on rented machines, attributed to the instance's provider/GPU
    for pod_id, provider, gpu in ProvisionedInstance.objects.exclude(node=None).values_list(
        "node__pods__id", "provider", "gpu_model"
    ):
        if pod_id is not None:
            sourced_pods[pod_id] = {"pod": str(pod_id), "provider": provider, "gpu_model": gpu}[key]
    for row in (
        UsageRecord.objects.filter(pod_id__in=list(sourced_pods))
        .values("pod_id")
        .annotate(total=Sum("amount"))
    ):
        revenue[sourced_pods[row["pod_id"]]] += row["total"]
    keys = set(cost) | set(revenue)
    return {
        k: {"revenue": revenue[k], "upstream_cost": cost[k], "margin": revenue[k] - cost[k]}
        for k in sorted(keys)
    }

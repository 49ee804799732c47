"""Enrolling a GPU host (DESIGN.md §4): a registering agent becomes a node with a fresh token,
or re-keys the node it was; limited registration tokens are counted and refused when spent."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.gpu_models import canonical_gpu_model
from apps.core.secrets import secret_issue
from apps.nodes import signals
from apps.nodes.locks import lock_node, lock_registration_token_use
from apps.nodes.models import Credential, Gpu, Node, NodeRegistration, NodeStatus
from apps.nodes.registration import RegistrationGrant

logger = logging.getLogger(__name__)

NODE_TOKEN_PREFIX = "nt_"  # noqa: S105 - a prefix, not a secret


class RegistrationTokenSpentError(Exception):
    """A limited registration token was used up or has expired; the message says which."""


@dataclass(frozen=True)
class RegisteredNode:
    node: Node
    raw_token: str  # shown to the agent once


def _system_fields(system: dict[str, Any]) -> dict[str, Any]:
    return {
        "cpu_model": system.get("cpu_model") or "",
        "cpu_cores": system.get("cpu_cores") or 0,
        "ram_total_mb": system.get("ram_total_mb") or 0,
        "disk_total_gb": system.get("disk_total_gb") or 0,
        "disk_free_gb": system.get("disk_free_gb") or 0,
        "os": system.get("os") or "",
        "kernel": system.get("kernel") or "",
        "docker_version": system.get("docker_version") or "",
        "address": system.get("address") or "",
    }


def _find_same_machine(
    *, grant: RegistrationGrant, provider_instance_id: str, gpu_uuids: list[str]
) -> Node | None:
    """An agent that lost its token re-registers as the node it was: same upstream instance,
    or the same physical GPUs (UUIDs are unique per device), under the same owner."""
    candidates = Node.objects.exclude(status=NodeStatus.RETIRED).filter(
        provider_id=grant.provider_id
    )
    if provider_instance_id:
        return candidates.filter(provider_instance_id=provider_instance_id).first()
    if gpu_uuids:
        return candidates.filter(gpus__uuid__in=gpu_uuids).distinct().first()
    return None


def _claim_token_use(*, grant: RegistrationGrant, now: datetime) -> None:
    """Count one use of a limited token, or refuse: over its uses, or past its lifetime."""
    max_uses: int = settings.NODE_REGISTRATION_TOKEN_MAX_USES
    ttl = timedelta(seconds=settings.NODE_REGISTRATION_TOKEN_TTL_S)
    use = lock_registration_token_use(digest=grant.limited_digest, credential=grant.credential)
    started = grant.issued_at or (use.first_used_at if use.uses else now)
    what = "bootstrap token" if grant.credential == Credential.BOOTSTRAP else "instance token"
    if now > started + ttl:
        raise RegistrationTokenSpentError(
            f"This {what} expired at {(started + ttl).isoformat(timespec='seconds')} "
            f"({ttl.total_seconds():.0f} s after it was "
            f"{'issued' if grant.issued_at else 'first used'}): issue a new one."
        )
    if use.uses >= max_uses:
        raise RegistrationTokenSpentError(
            f"This {what} has already registered {use.uses} node(s), its limit: bootstrap and "
            f"instance tokens register at most {max_uses} node(s) within "
            f"{ttl.total_seconds():.0f} s. Issue a new one."
        )
    if not use.uses:
        use.first_used_at = now
    use.uses += 1
    use.last_used_at = now
    use.save(update_fields=["uses", "first_used_at", "last_used_at"])


@transaction.atomic
def node_register(
    *, grant: RegistrationGrant, data: dict[str, Any], source_ip: str = ""
) -> RegisteredNode:
    """Create (or re-key) the node for a registering agent and issue its token. A limited
    token (bootstrap, `sit_…`) is counted first and refused when spent; every registration is
    recorded with its credential and source address."""
    now = timezone.now()
    if grant.limited_digest:
        _claim_token_use(grant=grant, now=now)
    issued = secret_issue(prefix=NODE_TOKEN_PREFIX)
    gpus = data.get("gpus") or []
    provider_instance_id = grant.provider_instance_id or data.get("provider_instance_id") or ""
    fields = {
        "hostname": data["hostname"],
        "agent_version": data.get("agent_version") or "",
        "driver_version": data.get("driver_version") or "",
        "cuda_version": data.get("cuda_version") or "",
        "provider_instance_id": provider_instance_id,
        "token_prefix": issued.display_prefix,
        "token_digest": issued.digest,
        "heartbeat_interval": settings.NODE_HEARTBEAT_INTERVAL,
        "last_heartbeat_seq": None,  # a new token starts a new sequence
        **_system_fields(data.get("system") or {}),
    }
    node = _find_same_machine(
        grant=grant,
        provider_instance_id=provider_instance_id,
        gpu_uuids=[g["uuid"] for g in gpus],
    )
    rekeyed = node is not None
    if node is None:
        node = Node.objects.create(provider_id=grant.provider_id, **fields)
    else:
        node = lock_node(node.pk)
        for name, value in fields.items():
            setattr(node, name, value)
        node.save(update_fields=list(fields))
        node.gpus.all().delete()
        logger.info("node %s re-registered; previous token revoked", node.pk)
    NodeRegistration.objects.create(
        node=node,
        credential=grant.credential,
        credential_prefix=grant.credential_prefix,
        source_ip=source_ip[:64],
        hostname=node.hostname,
        rekeyed=rekeyed,
    )
    Gpu.objects.bulk_create(
        Gpu(
            node=node,
            index=g["index"],
            uuid=g["uuid"],
            name=g["name"],
            model=canonical_gpu_model(g["name"]),
            memory_total_mb=g["memory_total_mb"],
            mig_mode=g.get("mig_mode", False),
        )
        for g in gpus
    )
    transaction.on_commit(
        partial(signals.node_registered.send, sender=Node, node=node, grant=grant)
    )
    return RegisteredNode(node=node, raw_token=issued.raw)

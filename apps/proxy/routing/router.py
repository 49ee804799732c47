"""The router: a key's identity and its deployment's route (cached, see the package's
docstring), the replica to send a request to (least outstanding first, a replica that just
refused a connection left out for a while) and the deployment's per-minute limit."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from django.conf import settings

from apps.core.secrets import secret_digest
from apps.proxy.routing.cache import TtlCache, db_call
from apps.proxy.routing.counters import SharedCounters
from apps.proxy.routing.errors import (
    InvalidKeyError,
    ModelNotFoundError,
    NoReadyReplicaError,
    RateLimitedError,
)
from apps.proxy.routing.loaders import (
    ROUTABLE_DEPLOYMENT_STATUSES,
    DeploymentRoute,
    KeyIdentity,
    ReplicaRoute,
    load_identity,
    load_owner_routes,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "sk_"


class Router:
    """Process-wide routing state: caches, outstanding-request counts, quarantined replicas,
    rate-limit counters. Use the module's `router`."""

    def __init__(self) -> None:
        self._identities = TtlCache()
        self._owners = TtlCache()
        self.outstanding: dict[int, int] = {}
        self._down_until: dict[int, float] = {}
        self._rates = SharedCounters()

    @property
    def ttl(self) -> float:
        return float(settings.PROXY_ROUTE_CACHE_S)

    def invalidate(self) -> None:
        """Forget every cached key and route (the next request reads the database)."""
        self._identities.clear()
        self._owners.clear()
        self._down_until.clear()

    def remember_owner_routes(self, owner_id: uuid.UUID, routes: list[DeploymentRoute]) -> None:
        """Replace the cached routes of `owner_id` with a fresher read (a held request saw a
        replica turn READY: the requests after it need not wait for the cache to expire)."""
        self._owners.put(owner_id, routes, self.ttl)

    # --- who ---

    async def authenticate(self, raw_key: str | None) -> KeyIdentity:
        """The deployment key's identity, or InvalidKeyError (401). Revoked keys and keys of
        stopped deployments are refused."""
        if not raw_key or not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
            raise InvalidKeyError(
                "Incorrect API key provided. Use a deployment key (sk_…) in "
                "'Authorization: Bearer' or 'X-API-Key'."
            )
        digest = secret_digest(raw_key)
        identity = await self._identities.get(
            digest, self.ttl, lambda: db_call(load_identity)(digest)
        )
        if identity is None:
            raise InvalidKeyError("Incorrect API key provided.")
        return identity

    # --- where ---

    async def owner_routes(self, owner_id: uuid.UUID) -> list[DeploymentRoute]:
        """Every live (not stopped or failed) deployment of the user, oldest first."""
        return await self._owners.get(
            owner_id, self.ttl, lambda: db_call(load_owner_routes)(owner_id)
        )

    async def deployment_route(self, identity: KeyIdentity) -> DeploymentRoute:
        """The key's own deployment (404 once it is gone)."""
        for route in await self.owner_routes(identity.owner_id):
            if route.id == identity.deployment_id:
                return route
        raise ModelNotFoundError("The deployment of this key no longer exists.")

    async def resolve(
        self, identity: KeyIdentity, *, capability: str, model: str | None = None
    ) -> DeploymentRoute:
        """The key's deployment, checked to serve `model` (when given) and `capability`:
        404 (ModelNotFoundError) if not, 503 (NoReadyReplicaError) if it has no READY
        replica."""
        route = await self.deployment_route(identity)
        if model is not None and model != route.model_name:
            raise ModelNotFoundError(
                f"The model '{model}' does not exist in this deployment; it serves "
                f"'{route.model_name}'.",
                param="model",
            )
        if capability not in route.capabilities:
            raise ModelNotFoundError(
                f"The model '{route.model_name}' does not support {capability}; it serves "
                f"{', '.join(sorted(route.capabilities)) or 'nothing'}.",
                param="model",
            )
        self._require_routable(route)
        return route

    async def resolve_for_owner(self, identity: KeyIdentity, *, capability: str) -> DeploymentRoute:
        """A deployment of the key's owner that serves `capability`: the key's own one if it
        does, else the user's oldest live one that does, READY ones first. 404 when the user
        has none, 503 when none of them has a READY replica."""
        routes = await self.owner_routes(identity.owner_id)
        serving = [r for r in routes if capability in r.capabilities]
        if not serving:
            raise ModelNotFoundError(f"You have no deployment that serves {capability}.")
        serving.sort(key=lambda r: (not r.routable, r.id != identity.deployment_id))
        self._require_routable(serving[0])
        return serving[0]

    def _require_routable(self, route: DeploymentRoute) -> None:
        if route.routable:
            return
        if route.status in ROUTABLE_DEPLOYMENT_STATUSES:
            raise NoReadyReplicaError(
                f"The deployment '{route.model_name}' has no ready replica right now."
            )
        raise NoReadyReplicaError(
            f"The deployment '{route.model_name}' is {route.status}, not ready to serve."
        )

    def candidates(self, route: DeploymentRoute) -> list[ReplicaRoute]:
        """The READY replicas to try, in order: fewest outstanding requests first (ties
        broken at random), replicas that just refused a connection left out. Empty raises
        NoReadyReplicaError."""
        now = time.monotonic()
        healthy = [r for r in route.replicas if self._down_until.get(r.replica_id, 0) <= now]
        if not healthy:
            raise NoReadyReplicaError(
                f"Every replica of '{route.model_name}' is failing right now; retry shortly.",
                retry_after=int(settings.PROXY_REPLICA_COOLDOWN_S) or 1,
            )
        # Least outstanding first; hash of time as a cheap tie-breaker spreads equal loads.
        spin = int(now * 1000)
        return sorted(
            healthy,
            key=lambda r: (self.outstanding.get(r.replica_id, 0), (r.replica_id ^ spin) & 0xFF),
        )

    def acquire(self, replica: ReplicaRoute) -> None:
        """Count one outstanding request on `replica` (until `release`)."""
        rid = replica.replica_id
        self.outstanding[rid] = self.outstanding.get(rid, 0) + 1

    def release(self, replica: ReplicaRoute) -> None:
        rid = replica.replica_id
        left = self.outstanding.get(rid, 1) - 1
        if left > 0:
            self.outstanding[rid] = left
        else:
            self.outstanding.pop(rid, None)

    @asynccontextmanager
    async def lease(self, replica: ReplicaRoute) -> AsyncIterator[ReplicaRoute]:
        """Count one outstanding request on `replica` for the duration of the block."""
        self.acquire(replica)
        try:
            yield replica
        finally:
            self.release(replica)

    def mark_failed(self, replica: ReplicaRoute, reason: str) -> None:
        """`replica` refused a connection or dropped it before answering: send nothing more to
        it from this process for PROXY_REPLICA_COOLDOWN_S (the health check decides for
        good)."""
        self._down_until[replica.replica_id] = time.monotonic() + settings.PROXY_REPLICA_COOLDOWN_S
        logger.warning(
            "proxy: replica %s of %s failed (%s); cooling down",
            replica.replica_id,
            replica.deployment_id,
            reason,
        )

    # --- how much ---

    async def check_rate(self, route: DeploymentRoute) -> None:
        """Count one request against the deployment's per-minute limit; RateLimitedError (429)
        past it. Counting is local and immediate; every PROXY_RATE_SYNC_S the process adds its
        counts to the shared ones in Redis (when REDIS_URL is set) and learns the other
        processes' — so no Redis round trip on the request path, and the limit holds across
        web processes to within one sync interval of traffic. A Redis outage lets requests
        through on the local counts."""
        limit = route.rate_limit_per_minute
        if not limit or not settings.RATE_LIMIT_ENABLED:
            return
        now = time.time()
        window = int(now // 60)
        key = f"prl:{route.id}:{window}"
        count = self._rates.hit(key)
        if count > limit:
            retry_after = max(1, int((window + 1) * 60 - now + 0.999))
            raise RateLimitedError(
                f"Rate limit of {limit} requests per minute reached for "
                f"'{route.model_name}'; retry in {retry_after} s.",
                retry_after=retry_after,
            )


router = Router()

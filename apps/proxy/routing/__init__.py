"""Routing for everything that talks to deployments: the `/v1` HTTP proxy and the `/ws` voice
consumers. Async, in-process, and off the database on the hot path.

    from apps.proxy.routing import router, usage_buffer, UsageEntry, ProxyError

    identity = await router.authenticate(raw_key)            # sk_… → KeyIdentity, or 401
    route = await router.resolve(identity, capability="chat", model="my-model")  # 404 / 503
    await router.check_rate(route)                            # 429 with retry_after
    for replica in router.candidates(route):                  # least outstanding first
        async with router.lease(replica):                     # counts outstanding requests
            ...  # call replica.base_url; on a connect failure: router.mark_failed(replica, why)
    usage_buffer.record(UsageEntry(deployment_id=route.id, ...))   # flushed in batches

A voice session backed by several of the user's deployments picks each by capability:
`await router.resolve_for_owner(identity, capability="transcription")` (the key's own
deployment first when it has that capability, else the user's other live deployments).

What is cached, and for how long (PROXY_ROUTE_CACHE_S, default 2 s): a key's identity and a
deployment's READY replicas. An entry expired by less than one more TTL is still served while a
background read replaces it, so a key in steady use never waits on the database; an older one
is not served. So in every web process, a revoked key or a replica the health check took out of
service stops being used at most 2 x PROXY_ROUTE_CACHE_S (4 s by default) after the change.
Outstanding-request counts and the short quarantine of a replica that refused a connection
(PROXY_REPLICA_COOLDOWN_S) are per process.

Errors are `ProxyError`s carrying the HTTP status, OpenAI's error `type` and `code`, and for 429
the seconds to wait: the `/v1` views render them as OpenAI error bodies, the voice consumers as
close codes.

The package: `errors` (ProxyError and its kinds), `loaders` (what routing hands out and the
database reads behind it), `cache` (the TTL cache, `db_call`), `router` (the router),
`counters` (Redis-shared counters, `LoopSync`), `usage` (the usage buffer).
"""

from apps.proxy.routing.cache import TtlCache, _TtlCache, db_call
from apps.proxy.routing.counters import LoopSync, SharedCounters
from apps.proxy.routing.errors import (
    InvalidKeyError,
    InvalidRequestError,
    ModelNotFoundError,
    NoReadyReplicaError,
    ProxyError,
    RateLimitedError,
    UpstreamError,
)
from apps.proxy.routing.loaders import (
    ROUTABLE_DEPLOYMENT_STATUSES,
    DeploymentRoute,
    KeyIdentity,
    ReplicaRoute,
    load_owner_routes,
)
from apps.proxy.routing.router import KEY_PREFIX, Router, router
from apps.proxy.routing.usage import UsageBuffer, UsageEntry, usage_buffer

__all__ = [
    "KEY_PREFIX",
    "ROUTABLE_DEPLOYMENT_STATUSES",
    "DeploymentRoute",
    "InvalidKeyError",
    "InvalidRequestError",
    "KeyIdentity",
    "LoopSync",
    "ModelNotFoundError",
    "NoReadyReplicaError",
    "ProxyError",
    "RateLimitedError",
    "ReplicaRoute",
    "Router",
    "SharedCounters",
    "TtlCache",
    "UpstreamError",
    "UsageBuffer",
    "UsageEntry",
    "_TtlCache",
    "db_call",
    "load_owner_routes",
    "router",
    "usage_buffer",
]

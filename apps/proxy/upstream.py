"""Calling a deployment's replicas: one shared httpx connection pool per event loop, and the
failover rule — a replica that fails before it has answered anything (refused or dropped
connection) is quarantined and the request goes to the next one; once a response has begun,
nothing is retried (part of it may already be with the client)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import ssl
import weakref
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
from django.conf import settings

from apps.proxy.routing import (
    DeploymentRoute,
    NoReadyReplicaError,
    ProxyError,
    ReplicaRoute,
    router,
)

# Failures that mean "this replica did not get to answer": safe to send elsewhere.
FAILOVER_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
)


class UpstreamTimeoutError(ProxyError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


# Per event loop: its loop (weakly, so that a dead loop's id reused by a new one is not taken
# for it) and its clients.
_pools: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], list[httpx.AsyncClient]]] = {}
_turn = itertools.count()


def _new_client(max_connections: int, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        # Below the 5 s idle timeout of uvicorn-based servers (vLLM, TEI, ours), so a pooled
        # connection is dropped by us before the server closes it.
        keepalive_expiry=4.0,
    )
    return httpx.AsyncClient(
        # No Nagle: a request's headers and body go out as separate writes, and waiting for
        # the first one's ACK costs up to a delayed-ACK timeout (40 ms) on Linux.
        transport=httpx.AsyncHTTPTransport(
            verify=ssl_context,
            limits=limits,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        ),
        timeout=httpx.Timeout(
            connect=settings.PROXY_CONNECT_TIMEOUT_S,
            read=settings.PROXY_READ_TIMEOUT_S,
            write=settings.PROXY_READ_TIMEOUT_S,
            pool=settings.PROXY_READ_TIMEOUT_S,
        ),
        # Streams are relayed as they arrive: a compressed one could not be (httpx would ask
        # for gzip by default).
        headers={"accept-encoding": "identity"},
        trust_env=False,
        follow_redirects=False,
    )


def upstream_client() -> httpx.AsyncClient:
    """A pooled client for the running event loop (an httpx client belongs to the loop that
    made it). The process's connections are split over PROXY_POOL_SHARDS clients taken in
    turn: httpx's pool looks at every one of its connections (a socket probe each) whenever a
    request starts or ends, so one pool of hundreds of keep-alive connections costs more per
    request than the rest of the proxy together; a few small pools keep that flat."""
    loop = asyncio.get_running_loop()
    entry = _pools.get(id(loop))
    if entry is None or entry[0]() is not loop or entry[1][0].is_closed:
        shards = max(1, settings.PROXY_POOL_SHARDS)
        per_shard = max(1, -(-settings.PROXY_MAX_CONNECTIONS // shards))
        context = httpx.create_ssl_context()  # loading CA files once, not per shard
        clients = [_new_client(per_shard, context) for _ in range(shards)]
        entry = _pools[id(loop)] = (weakref.ref(loop), clients)
    pool = entry[1]
    return pool[next(_turn) % len(pool)]


@dataclass
class UpstreamCall:
    """A replica's response whose headers have arrived; the body is still to be read
    (`response.aread()` or `response.aiter_raw()`). `aclose` releases the connection and the
    replica's outstanding-request count."""

    replica: ReplicaRoute
    response: httpx.Response
    attempts: int
    _stack: AsyncExitStack

    async def aclose(self) -> None:
        await self._stack.aclose()


async def open_upstream(
    route: DeploymentRoute,
    *,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
) -> UpstreamCall:
    """Send the request to the least-busy READY replica, failing over to the next one while
    no response has started. NoReadyReplicaError (503) when every replica failed,
    UpstreamTimeoutError (504) when one accepted the request but did not answer in time."""
    client = upstream_client()
    failures: list[str] = []
    attempts = 0
    for replica in router.candidates(route):
        # A pooled keep-alive connection the replica closed in between looks like a dropped
        # one: give each replica a second try on a fresh connection before quarantining it.
        failure = ""
        for _ in range(2):
            attempts += 1
            stack = AsyncExitStack()
            await stack.enter_async_context(router.lease(replica))
            request = client.build_request(
                method, replica.base_url + path, content=content, headers=headers
            )
            try:
                response = await client.send(request, stream=True)
            except FAILOVER_ERRORS as exc:
                await stack.aclose()
                failure = f"{exc.__class__.__name__}: {exc}"
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    break  # nobody listens there: no second try
                continue
            except httpx.TimeoutException as exc:
                await stack.aclose()
                raise UpstreamTimeoutError(
                    f"The model did not answer within {settings.PROXY_READ_TIMEOUT_S:.0f} s."
                ) from exc
            except BaseException:
                await stack.aclose()
                raise
            stack.push_async_callback(response.aclose)
            return UpstreamCall(replica=replica, response=response, attempts=attempts, _stack=stack)
        failures.append(f"replica {replica.replica_id}: {failure}")
        router.mark_failed(replica, failure)
    raise NoReadyReplicaError(
        f"No replica of '{route.model_name}' could be reached ({'; '.join(failures)[:300]}).",
        retry_after=1,
    )

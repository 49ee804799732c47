"""Calling a deployment's replicas: one shared aiohttp connection pool per event loop, and the
failover rule — a replica that fails before it has answered anything (refused or dropped
connection) is quarantined and the request goes to the next one; once a response has begun,
nothing is retried (part of it may already be with the client).

aiohttp rather than httpx: measured on one core, httpx's pool (anyio, a socket probe of every
pooled connection per request) cost more CPU per proxied request than the rest of the proxy
together (bench/proxy.py --profile)."""

from __future__ import annotations

import asyncio
import atexit
import weakref
from dataclasses import dataclass, field

import aiohttp
from django.conf import settings

from apps.proxy.routing import (
    DeploymentRoute,
    NoReadyReplicaError,
    ProxyError,
    ReplicaRoute,
    router,
)

# Failures that mean "this replica did not get to answer": safe to send elsewhere. A pooled
# keep-alive connection the replica closed in between looks like a dropped one
# (ServerDisconnectedError, a reset): worth a second try on a fresh connection.
NOBODY_LISTENS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
FAILOVER_ERRORS = (*NOBODY_LISTENS, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# What a relayed body can break with once it has begun.
STREAM_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class UpstreamTimeoutError(ProxyError):
    status = 504
    type = "server_error"
    code = "upstream_timeout"


# Per event loop: its loop (weakly, so that a dead loop's id reused by a new one is not taken
# for it) and its session.
_sessions: dict[int, tuple[weakref.ref[asyncio.AbstractEventLoop], aiohttp.ClientSession]] = {}


def _new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.PROXY_MAX_CONNECTIONS,
        limit_per_host=0,
        # Below the 5 s idle timeout of uvicorn-based servers (vLLM, TEI, ours), so a pooled
        # connection is dropped by us before the server closes it.
        keepalive_timeout=4.0,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=settings.PROXY_READ_TIMEOUT_S,  # waiting for a pooled connection included
            sock_connect=settings.PROXY_CONNECT_TIMEOUT_S,
            sock_read=settings.PROXY_READ_TIMEOUT_S,
        ),
        # Streams are relayed as they arrive: asked for uncompressed. One that is compressed
        # anyway is decoded (auto_decompress), since the client gets no Content-Encoding.
        headers={"accept-encoding": "identity"},
        auto_decompress=True,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


def upstream_session() -> aiohttp.ClientSession:
    """The pooled session of the running event loop (a session belongs to the loop that made
    it). aiohttp sets TCP_NODELAY on its connections: a request's headers and body are never
    held back for a delayed ACK."""
    loop = asyncio.get_running_loop()
    entry = _sessions.get(id(loop))
    if entry is None or entry[0]() is not loop or entry[1].closed:
        _forget_dead_loops()
        entry = _sessions[id(loop)] = (weakref.ref(loop), _new_session())
    return entry[1]


def _forget_dead_loops(*, every: bool = False) -> None:
    """Drop the sessions of loops that have ended (a test server's, a thread's). Their
    connections are closed at once: a session left to the garbage collector warns that it was
    never closed, and one whose loop is closed cannot be closed the asynchronous way."""
    for key, (ref, session) in list(_sessions.items()):
        loop = ref()
        if every or loop is None or loop.is_closed():
            _sessions.pop(key, None)
            connector = session.connector
            if connector is not None and not connector.closed:
                connector._close()  # noqa: SLF001 - the synchronous close of aiohttp's pool


atexit.register(_forget_dead_loops, every=True)


@dataclass
class UpstreamCall:
    """A replica's response whose headers have arrived; the body is still to be read
    (`response.read()` or `response.content.iter_any()`). `aclose` releases the connection and
    the replica's outstanding-request count (once)."""

    replica: ReplicaRoute
    response: aiohttp.ClientResponse
    attempts: int
    _open: bool = field(default=True, repr=False)

    async def aclose(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            # Back to the pool when the body was read to its end; closed otherwise.
            self.response.release()
        finally:
            router.release(self.replica)


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
    session = upstream_session()
    failures: list[str] = []
    attempts = 0
    for replica in router.candidates(route):
        failure = ""
        for _ in range(2):
            attempts += 1
            router.acquire(replica)
            try:
                response = await session.request(
                    method, replica.base_url + path, data=content, headers=headers
                )
            except FAILOVER_ERRORS as exc:
                router.release(replica)
                failure = f"{exc.__class__.__name__}: {exc}"
                if isinstance(exc, NOBODY_LISTENS):
                    break  # nobody listens there: no second try
                continue
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                router.release(replica)
                raise UpstreamTimeoutError(
                    f"The model did not answer within {settings.PROXY_READ_TIMEOUT_S:.0f} s."
                ) from exc
            except aiohttp.ClientError as exc:  # a malformed answer: this replica is broken
                router.release(replica)
                failure = f"{exc.__class__.__name__}: {exc}"
                break
            except BaseException:
                router.release(replica)
                raise
            return UpstreamCall(replica=replica, response=response, attempts=attempts)
        failures.append(f"replica {replica.replica_id}: {failure}")
        router.mark_failed(replica, failure)
    raise NoReadyReplicaError(
        f"No replica of '{route.model_name}' could be reached ({'; '.join(failures)[:300]}).",
        retry_after=1,
    )

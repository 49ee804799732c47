"""`POST /api/v1/nodes/heartbeat` served ahead of Django (config/asgi.py), on the event loop.

Every node beats every interval, so this is the busiest request of the control plane. Through
Django each beat paid a thread hop, the middleware chain, DRF's request, authentication and
serializers, and six statements. Here a beat that `heartbeat_lean` can serve costs one
statement on an async connection pool, its GPU readings are written in batches
(`TelemetryBuffer`), and everything else is handed, body and all, to the full stack behind
this handler, which answers it exactly as before (docs/agent-protocol.md).

Authentication is the full path's: the token's SHA-256 is looked up in the same statement
(lookups go by hash, so nothing compares the secret byte by byte), on every beat, uncached: a
retired or re-keyed node's token stops working on its next beat. Per node, the request rate
limits (RATE_LIMITS) are counted in this process.

Overload is told by how long beats wait for a connection, not by how many wait (`QueueDelay`,
after CoDel): a burst that the pool drains within the target is served whole, however deep;
a queue that has stood above the target for a whole window sheds new beats until it drains.
A hard bound on beats held at once (NODE_HEARTBEAT_MAX_WAITING) and the pool's wait limit
(WEB_QUEUE_TIMEOUT_S) stay as backstops. A shed beat gets 503 with a Retry-After spread over
the heartbeat interval, so a shed fleet does not come back at once."""

import asyncio
import json
import logging
import random
import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from psycopg import AsyncConnection
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from apps.core import metrics
from apps.core.asgi import SecureEdge, header
from apps.core.errors import error_body
from apps.core.ratelimit import configured_limits
from apps.core.secrets import secret_digest
from apps.nodes.heartbeat_lean import (
    BEAT_SQL,
    NotLeanError,
    answer_body,
    beat_params,
    parse_beat,
)

logger = logging.getLogger(__name__)

PATH = "/api/v1/nodes/heartbeat"

FLUSH_SQL = """
UPDATE nodes_gpu g SET memory_used_mb = v.mem, utilization_pct = v.util,
    temperature_c = v.temp, power_w = v.power, telemetry_at = v.at
FROM unnest(%s::uuid[], %s::integer[], %s::integer[], %s::float8[], %s::float8[],
            %s::float8[], %s::timestamptz[]) AS v(node, idx, mem, util, temp, power, at)
WHERE g.node_id = v.node AND g."index" = v.idx
"""


class TelemetryBuffer:
    """The latest GPU readings per (node, GPU index), written by `flush` in one statement."""

    def __init__(self) -> None:
        self.readings: dict[tuple[Any, int], tuple[Any, ...]] = {}

    def add(self, node_id: Any, gpus: list[tuple[Any, ...]], at: Any) -> None:
        for index, mem, util, temp, power in gpus:
            self.readings[(node_id, index)] = (mem, util, temp, power, at)

    async def flush(self, conn: AsyncConnection[Any]) -> int:
        readings, self.readings = self.readings, {}
        if not readings:
            return 0
        rows = sorted(readings.items(), key=lambda item: (str(item[0][0]), item[0][1]))
        # Sorted, so two processes flushing at once lock the rows in one order.
        columns: list[list[Any]] = [[] for _ in range(7)]
        for (node_id, index), values in rows:
            for column, value in zip(columns, (node_id, index, *values), strict=True):
                column.append(value)
        await conn.execute(FLUSH_SQL, columns)
        return len(rows)


class RateCounter:
    """RATE_LIMITS per node, counted in this process in fixed windows (as the middleware counts
    them in Redis for the rest of the site)."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, int], tuple[int, int]] = {}

    def hit(self, key: str, now: float) -> int:
        """Count one request; the seconds to wait when it is over a limit, else 0."""
        retry_after = 0
        for limit in configured_limits():
            window = int(now // limit.period)
            seen, count = self.windows.get((key, limit.period), (window, 0))
            count = count + 1 if seen == window else 1
            self.windows[(key, limit.period)] = (window, count)
            if count > limit.count:
                reset_at = (window + 1) * limit.period
                retry_after = max(retry_after, max(1, int(reset_at - now + 0.999)))
        return retry_after

    def forget_old(self, now: float) -> None:
        self.windows = {
            key: (window, count)
            for key, (window, count) in self.windows.items()
            if window >= int(now // key[1])
        }


# OPTIONS that Django reads itself; the rest (sslmode, sslrootcert, …) are libpq's.
DJANGO_ONLY_OPTIONS = frozenset(
    {"pool", "cursor_factory", "isolation_level", "server_side_binding", "assume_role"}
)


def _conninfo() -> str:
    """Django's default database, as a libpq connection string (read when a pool opens, so a
    test run's test database is the one used)."""
    db = settings.DATABASES["default"]
    options: dict[str, Any] = {
        name: value
        for name, value in (db.get("OPTIONS") or {}).items()
        if name not in DJANGO_ONLY_OPTIONS and isinstance(value, str | int)
    }
    return make_conninfo(
        dbname=db["NAME"],
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=str(db["PORT"]) if db.get("PORT") else None,
        **options,
    )


async def _configure(conn: AsyncConnection[Any]) -> None:
    """A heartbeat's write need not wait for the WAL flush: a crash can lose at most the last
    fraction of a second of beats, which the next beats (every interval) write again, and
    commands whose delivery was lost are delivered again (the agent acks each id once). The
    connection is then held for the statement's CPU time only, not the disk's."""
    await conn.execute("SET synchronous_commit = off")


class QueueDelay:
    """Is the connection queue standing, or only a burst? Each beat reports how long it
    waited for a connection; a window in which even the shortest wait was above the target
    means the queue never drained, and the next window sheds new beats (until a window's
    shortest wait is under the target again). A burst, however deep, drains within a window
    and sheds nothing."""

    def __init__(self, *, target_s: float, window_s: float) -> None:
        self.target_s = target_s
        self.window_s = window_s
        self.overloaded = False
        self._window_ends = 0.0
        self._shortest = float("inf")

    def waited(self, seconds: float, now: float) -> None:
        if now >= self._window_ends:
            # A window with no beats at all says nothing about a queue: it is not standing.
            self.overloaded = self._shortest > self.target_s and self._shortest != float("inf")
            self._shortest = float("inf")
            self._window_ends = now + self.window_s
        self._shortest = min(self._shortest, seconds)

    def admit(self, *, queued: int, now: float) -> bool:
        """May a new beat join? `queued`: beats held now beyond what the pool serves at once."""
        if self.overloaded and queued <= 0:
            # Drained: start a fresh window (the beats just served waited behind the old queue).
            self.overloaded = False
            self._shortest = float("inf")
            self._window_ends = now + self.window_s
        return not self.overloaded


class LeanHeartbeat:
    """The ASGI app: heartbeats it can serve, served; every other request to `app`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.edge = SecureEdge(self._serve)  # the site's security headers and HTTPS redirect
        self.telemetry = TelemetryBuffer()
        self.rates = RateCounter()
        self.served = self.handed_on = self.shed = 0  # since start, for logs and benches
        self.in_flight = 0  # beats this process is working on or waiting to
        self.queue = QueueDelay(
            target_s=settings.NODE_HEARTBEAT_QUEUE_TARGET_MS / 1000,
            window_s=settings.NODE_HEARTBEAT_QUEUE_WINDOW_MS / 1000,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opened: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope.get("path") == PATH
            and scope.get("method") == "POST"
            and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
        ):
            queued = self.in_flight - settings.NODE_HEARTBEAT_DB_CONNECTIONS
            if self.in_flight >= settings.NODE_HEARTBEAT_MAX_WAITING or not self.queue.admit(
                queued=queued, now=time.monotonic()
            ):
                await self._shed(send)  # before the body is even read: shedding stays cheap
                return
            self.in_flight += 1
            try:
                await self.edge(scope, receive, send)
            finally:
                self.in_flight -= 1
        else:
            await self.app(scope, receive, send)

    async def pool(self) -> AsyncConnectionPool[Any]:
        """This event loop's pool (a test's loops come and go; a server has one)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._pool is None or self._opened is None:
            self._loop = loop
            self._pool = AsyncConnectionPool(
                _conninfo(),
                min_size=1,
                max_size=settings.NODE_HEARTBEAT_DB_CONNECTIONS,
                max_waiting=settings.NODE_HEARTBEAT_MAX_WAITING,
                kwargs={"autocommit": True},
                configure=_configure,
                open=False,
                name="heartbeats",
            )
            self._opened = loop.create_task(self._pool.open())
            self._flusher = loop.create_task(self._flush_forever())
        pool = self._pool
        await asyncio.shield(self._opened)
        return pool

    async def flush_telemetry(self) -> int:
        """Write the buffered GPU readings now; how many were written."""
        if not self.telemetry.readings:
            return 0
        async with (await self.pool()).connection() as conn:
            return await self.telemetry.flush(conn)

    async def _flush_forever(self) -> None:
        # Its own connection: beats waiting for the pool's must not hold the readings back.
        conn: AsyncConnection[Any] | None = None
        forgot = time.monotonic()
        try:
            while True:
                await asyncio.sleep(settings.NODE_TELEMETRY_FLUSH_MS / 1000)
                try:
                    if conn is None or conn.closed:
                        conn = await AsyncConnection.connect(_conninfo(), autocommit=True)
                    await self.telemetry.flush(conn)
                except Exception:  # a lost batch is only older readings; the next has new ones
                    logger.exception("GPU telemetry flush failed")
                    if conn is not None:
                        await conn.close()
                    conn = None
                if time.monotonic() - forgot > 60:
                    self.rates.forget_old(time.time())
                    forgot = time.monotonic()
        finally:
            if conn is not None:
                await conn.close()

    async def aclose(self) -> None:
        """Flush and close this loop's pool (tests; a server process just exits)."""
        if self._pool is not None and self._loop is asyncio.get_running_loop():
            if self._flusher is not None:
                self._flusher.cancel()
                await asyncio.gather(self._flusher, return_exceptions=True)
            await self.flush_telemetry()
            await self._pool.close()
        self._pool = self._opened = self._flusher = None
        self._loop = None

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        token = (header(scope, b"x-agent-api-key") or "").strip()
        length = (header(scope, b"content-length") or "").strip()
        content_type = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if (
            not token
            or not length.isdigit()
            or int(length) > settings.MAX_REQUEST_BODY_BYTES
            or content_type != "application/json"
        ):
            await self._hand_on(scope, receive, send, None)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        try:
            beat = parse_beat(body)
        except NotLeanError:
            await self._hand_on(scope, receive, send, body)
            return
        now = timezone.now()
        if abs((now - beat.sent_at).total_seconds()) > settings.NODE_HEARTBEAT_REPLAY_WINDOW_S:
            await self._hand_on(scope, receive, send, body)  # the full path says why
            return
        if beat.volumes:
            # The volume measurement's receivers (quota stops) are sync code that may queue
            # commands this very answer should carry: the full path runs them in order.
            await self._hand_on(scope, receive, send, body)
            return
        digest = secret_digest(token)
        if settings.RATE_LIMIT_ENABLED:
            retry_after = self.rates.hit("node:" + digest, time.time())
            if retry_after:
                await _send_error(
                    send,
                    429,
                    "rate_limited",
                    f"Too many requests; retry in {retry_after} s.",
                    retry_after,
                )
                return
        try:
            pool = await self.pool()
            asked = time.monotonic()
            async with pool.connection(timeout=settings.WEB_QUEUE_TIMEOUT_S) as conn:
                got = time.monotonic()
                self.queue.waited(got - asked, got)
                params = beat_params(digest=digest, beat=beat, now=now)
                cursor = await conn.execute(BEAT_SQL, params)
                node_id, interval, commands, wanted = await cursor.fetchone()
        except (PoolTimeout, TooManyRequests):
            await self._shed(send)
            return
        if node_id is None:  # nothing written: the full path decides (and says why)
            await self._hand_on(scope, receive, send, body)
            return
        if beat.gpus:
            self.telemetry.add(node_id, beat.gpus, now)
        self.served += 1
        metrics.HEARTBEATS.inc()
        raw = answer_body(interval=interval, commands=commands, wanted=wanted)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    async def _shed(self, send: Any) -> None:
        """503, with a Retry-After spread over the heartbeat interval."""
        self.shed += 1
        await _send_error(
            send,
            503,
            "overloaded",
            "The server is overloaded; retry after the Retry-After delay.",
            random.randint(1, max(1, settings.NODE_HEARTBEAT_INTERVAL)),  # noqa: S311
        )

    async def _hand_on(self, scope: dict[str, Any], receive: Any, send: Any, body: Any) -> None:
        """To the full stack; a body already read is given to it as if it had just arrived."""
        self.handed_on += 1
        if body is None:
            await self.app(scope, receive, send)
            return
        given = False

        async def replay() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _read_body(receive: Any) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_error(send: Any, status: int, code: str, message: str, retry_after: int) -> None:
    raw = json.dumps(error_body(status_code=status, code=code, message=message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})

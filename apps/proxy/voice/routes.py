"""A session's view of its deployments, kept fresh without waiting on it.

A voice session outlives the routing cache (PROXY_ROUTE_CACHE_S): replicas come and go and a
deployment may be stopped while a caller talks. The session re-resolves its routes in the
background when it is about to need them (the user started speaking; a `speak` arrived), so
the turn that follows uses current replicas and never waits for the lookup. The router itself
serves its cache while one background read refreshes it (stale-while-revalidate), so a change
reaches a session within a turn or two. A deployment that is no longer ready ends the session
with 4409 at its next use."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from apps.proxy.voice.messages import CLOSE_NOT_READY, FatalError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class NotReadyError(Exception):
    """A deployment the session needs is not READY (the message says which and why)."""


class LiveRoutes(Generic[T]):
    def __init__(self, initial: T, resolve: Callable[[], Awaitable[T]] | None = None) -> None:
        self.current = initial
        self.resolve = resolve
        self.problem: str | None = None
        self._refreshing: asyncio.Task[None] | None = None

    def refresh(self) -> None:
        """Start re-resolving in the background (at most one lookup at a time)."""
        if self.resolve is None or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._refreshing = asyncio.create_task(self._refresh(self.resolve))

    async def _refresh(self, resolve: Callable[[], Awaitable[T]]) -> None:
        try:
            self.current = await resolve()
            self.problem = None
        except NotReadyError as exc:
            logger.info("voice: a session's deployment is no longer ready: %s", exc)
            self.problem = str(exc)
        except Exception:  # a lookup failure keeps the routes we have
            logger.exception("voice: could not refresh a session's routes")

    async def get(self) -> T:
        """The routes to use now. A lookup still in flight (the utterance was shorter than the
        lookup, e.g. audio sent faster than real time) is waited for, so a stopped deployment
        is never used after it was seen stopped."""
        if self._refreshing is not None and not self._refreshing.done():
            await asyncio.shield(self._refreshing)
        if self.problem is not None:
            raise FatalError("deployment_not_ready", self.problem, CLOSE_NOT_READY)
        return self.current

    async def close(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._refreshing.cancel()

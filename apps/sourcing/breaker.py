"""A circuit breaker and health counters per provider, visible to operators.

CLOSED lets calls through and counts consecutive failures; at `failure_threshold` it OPENs
and refuses calls for `reset_after` seconds, then lets exactly one probe through (HALF_OPEN):
a success closes it, a failure opens it again. BLOCKED (bad credentials, a suspended
account) refuses calls until an operator resets it. Time comes from `clock`, so tests drive
it explicitly."""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BreakerState(enum.StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    BLOCKED = "BLOCKED"


@dataclass
class CircuitBreaker:
    provider: str
    failure_threshold: int = 5
    reset_after: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float | None = None
    probe_in_flight: bool = False
    reason: str = ""
    # health, for operators
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    on_change: Callable[[CircuitBreaker], None] | None = None

    @property
    def state(self) -> BreakerState:
        if (
            self._state == BreakerState.OPEN
            and self.opened_at is not None
            and self.clock() - self.opened_at >= self.reset_after
        ):
            self._set(BreakerState.HALF_OPEN)
            self.probe_in_flight = False
        return self._state

    def _set(self, state: BreakerState) -> None:
        changed = state != self._state
        self._state = state
        if changed and self.on_change is not None:
            self.on_change(self)

    def allow(self) -> bool:
        state = self.state
        if state == BreakerState.CLOSED:
            return True
        if state == BreakerState.HALF_OPEN and not self.probe_in_flight:
            self.probe_in_flight = True
            return True
        return False

    def record(self, *, latency: float | None = None, error_class: str | None = None) -> None:
        self.calls += 1
        if latency is not None:
            self.latencies.append(latency)
        if error_class:
            self.errors[error_class] = self.errors.get(error_class, 0) + 1

    def record_success(self) -> None:
        self.failures = 0
        self.probe_in_flight = False
        if self._state in (BreakerState.HALF_OPEN, BreakerState.OPEN):
            self.opened_at = None
            self._set(BreakerState.CLOSED)

    def record_failure(self, reason: str = "") -> None:
        if self._state == BreakerState.BLOCKED:
            return
        self.failures += 1
        self.reason = reason[:300]
        self.probe_in_flight = False
        if self._state == BreakerState.HALF_OPEN or (
            self._state == BreakerState.CLOSED and self.failures >= self.failure_threshold
        ):
            self.opened_at = self.clock()
            self._set(BreakerState.OPEN)

    def block(self, reason: str) -> None:
        self.reason = reason[:300]
        self._set(BreakerState.BLOCKED)

    def reset(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probe_in_flight = False
        self.reason = ""
        self._set(BreakerState.CLOSED)

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        errors = sum(self.errors.values())

        def pct(p: float) -> float | None:
            return (
                round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)
                if ordered
                else None
            )

        return {
            "provider": self.provider,
            "state": self.state.value,
            "consecutive_failures": self.failures,
            "reason": self.reason,
            "calls": self.calls,
            "errors": dict(self.errors),
            "error_rate": round(errors / self.calls, 4) if self.calls else 0.0,
            "latency_ms_p50": pct(0.5),
            "latency_ms_p95": pct(0.95),
            "at": time.time(),
        }

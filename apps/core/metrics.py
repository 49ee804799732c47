"""Prometheus metrics: the counters and histograms every process updates, and one O(1) helper
per instrument point. Docs: docs/observability.md.

With `PROMETHEUS_MULTIPROC_DIR` set (production: web processes and Celery workers share the
directory), each process writes its values to files there and `/metrics` sums them
(apps/core/metrics_view.py). Files are named by host name, pid and a random part, so
containers sharing the directory through a volume never write to one another's files.
Without it, each process keeps its values in memory (development, tests). Gauges that describe
the database (nodes by state, pending pods, payouts, the ledger) are not kept here: they are
read when `/metrics` is scraped (apps/portal/metrics_collectors.py)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from contextvars import ContextVar
from typing import Any

from prometheus_client import Counter, Histogram, values

_HOST = socket.gethostname()
_process_ids: dict[int, str] = {}


def _process_id() -> str:
    """Unique to this process, stable while it lives: containers on the host's network share
    the host's name and may reuse one another's pids, so a random part separates them."""
    pid = os.getpid()
    ident = _process_ids.get(pid)
    if ident is None:
        ident = _process_ids[pid] = f"{_HOST}-{pid}-{uuid.uuid4().hex[:8]}"
    return ident


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)

# Seconds: most site requests take milliseconds; model answers take seconds to minutes.
_WEB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# --- web (Django middleware: apps/core/observability.py) -----------------------------------------
HTTP_REQUESTS = Counter(
    "gco_http_requests", "Site and API requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "gco_http_request_duration_seconds",
    "Time to answer a site or API request.",
    ["method", "route"],
    buckets=_WEB_BUCKETS,
)
HTTP_EXCEPTIONS = Counter(
    "gco_http_exceptions", "Requests whose view raised (answered 500).", ["route", "exception"]
)

# --- the /v1 model proxy -------------------------------------------------------------------------
PROXY_LATENCY = Histogram(
    "gco_proxy_request_duration_seconds",
    "Proxied model requests: time until the answer's last byte, by endpoint and status.",
    ["endpoint", "status"],
    buckets=_MODEL_BUCKETS,
)
PROXY_TTFT = Histogram(
    "gco_proxy_time_to_first_token_seconds",
    "Streamed model answers: time until the first chunk reached the client.",
    ["endpoint"],
    buckets=_MODEL_BUCKETS,
)
PROXY_TOKENS = Counter("gco_proxy_tokens", "Tokens through the proxy.", ["endpoint", "kind"])
PROXY_ADDED_LATENCY = Histogram(
    "gco_proxy_added_latency_seconds",
    "The proxy's own time before the call to the replica (key check, body, routing).",
    buckets=_OVERHEAD_BUCKETS,
)

# --- Celery (signals in config/celery.py) --------------------------------------------------------
TASK_DURATION = Histogram(
    "gco_celery_task_duration_seconds",
    "Celery task run time (the billing tick is task pods.bill_running).",
    ["task"],
    buckets=_TASK_BUCKETS,
)
TASKS = Counter("gco_celery_tasks", "Celery tasks run, by outcome.", ["task", "outcome"])

# --- domain --------------------------------------------------------------------------------------
PLACEMENTS = Counter("gco_scheduler_placements", "Pods placed by the scheduler.")
BILLED_MICROS = Counter(
    "gco_billing_charged_microdollars", "Micro-dollars charged to wallets by the billing tick."
)
HEARTBEATS = Counter("gco_node_heartbeats_received", "Agent heartbeats accepted.")
UPSTREAM_CALLS = Counter(
    "gco_upstream_calls",
    "HTTP calls to upstream clouds, by provider, operation and outcome.",
    ["provider", "op", "outcome"],
)

# When the current /v1 request reached the server (set by RequestContextASGI).
request_arrived: ContextVar[float | None] = ContextVar("gco_request_arrived", default=None)

# Label children cached by label values: one dict lookup per observation on the hot path
# instead of prometheus_client's `labels()` (string conversion, a lock, a dict lookup).
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def observe_http(*, method: str, route: str, status: int, seconds: float) -> None:
    _child(HTTP_REQUESTS, method, route, str(status)).inc()
    _child(HTTP_LATENCY, method, route).observe(seconds)


def observe_proxy(entry: Any) -> None:
    """One proxied request (apps/proxy/routing.UsageEntry), when its usage is recorded."""
    endpoint = entry.endpoint
    _child(PROXY_LATENCY, endpoint, str(entry.status_code)).observe(entry.latency_ms / 1000)
    if entry.streamed and entry.first_byte_ms is not None:
        _child(PROXY_TTFT, endpoint).observe(entry.first_byte_ms / 1000)
    if entry.prompt_tokens > 0:
        _child(PROXY_TOKENS, endpoint, "prompt").inc(entry.prompt_tokens)
    if entry.completion_tokens > 0:
        _child(PROXY_TOKENS, endpoint, "completion").inc(entry.completion_tokens)


def observe_proxy_overhead(upstream_call_at: float) -> None:
    """The time between the request's arrival and `upstream_call_at` (perf_counter)."""
    arrived = request_arrived.get()
    if arrived is not None:
        PROXY_ADDED_LATENCY.observe(upstream_call_at - arrived)


def observe_upstream(*, provider: str, op: str, outcome: str) -> None:
    _child(UPSTREAM_CALLS, provider, op, outcome).inc()


_task_started: dict[str, float] = {}


def task_started(task_id: str) -> None:
    _task_started[task_id] = time.perf_counter()


def task_finished(*, task_id: str, task_name: str, outcome: str) -> None:
    started = _task_started.pop(task_id, None)
    if started is not None:
        _child(TASK_DURATION, task_name).observe(time.perf_counter() - started)
    _child(TASKS, task_name, outcome).inc()

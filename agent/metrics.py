"""The agent's Prometheus metrics, served only when asked for (``GPU_AGENT_METRICS_PORT`` /
``--metrics-port``) and only on 127.0.0.1: a node exporter or a local Prometheus agent on the
host scrapes them; nothing off the host can."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CYCLES = Counter(
    "gco_agent_cycles", "Loop ticks (register, heartbeat, commands), by outcome.", ["outcome"]
)
CYCLE_DURATION = Histogram(
    "gco_agent_cycle_duration_seconds",
    "Time one loop tick took.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HEARTBEATS = Counter("gco_agent_heartbeats_sent", "Heartbeats the server accepted.")
COMMANDS = Counter("gco_agent_commands", "Commands run, by type and result.", ["type", "status"])
CONTAINERS = Gauge(
    "gco_agent_containers", "Containers reported in the last heartbeat, by state.", ["state"]
)

METRICS_HOST = "127.0.0.1"


def serve(port: int) -> WSGIServer:
    """Serve /metrics on 127.0.0.1:``port`` from a daemon thread; the server (to shut down)."""
    server, _thread = start_http_server(port, addr=METRICS_HOST)
    return server


def containers_reported(states: list[str]) -> None:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    for state in ("running", "created", "restarting", "exited", "dead", "missing", *counts):
        CONTAINERS.labels(state).set(counts.get(state, 0))

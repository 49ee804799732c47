"""The agent's loop: register once, then heartbeat, run commands, ack, reconcile — every tick.

Ticks are drift-corrected (next tick = previous tick + interval; an overrun is logged and the
missed ticks are skipped, never bunched). SIGTERM/SIGINT finish the current cycle, flush what
can be acked, save the state and exit 0; pod containers keep running.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from agent import __version__, metrics
from agent.client import (
    RequestRejectedError,
    ServerClient,
    ServerUnavailableError,
    Unauthorized,
)
from agent.commands import FETCH_LOGS, START_POD, Command, CommandRunner, parse_command
from agent.config import AgentConfig, ConfigError
from agent.gpu import GpuCollector
from agent.log import log
from agent.runtime import ContainerRuntimeError, DockerRuntime
from agent.state import AgentState, StateStore
from agent.system import SystemProbe
from agent.terminal import TerminalManager

logger = logging.getLogger("agent.main")

MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0
SHUTDOWN_GRACE_S = 20.0  # a stop_pod waits up to its timeout_s for the container


class RegistrationRejectedError(Exception):
    """The server refused the registration token (401): retrying cannot help."""


class Agent:
    """One GPU host's agent. ``run()`` loops over ``run_cycle()`` until stopped."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        runtime: DockerRuntime | None = None,
        gpus: GpuCollector | None = None,
        system: SystemProbe | None = None,
        store: StateStore | None = None,
        client: ServerClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.server_url = config.require_server()
        self.stop_event = threading.Event()
        self.store = store or StateStore(config.state_dir)
        self.state: AgentState = self.store.load()
        self.runtime = runtime or DockerRuntime(
            config.docker_host,
            config.network_mode,
            gpu_devices=config.gpu_devices,
            mounts=config.mounts,
        )
        self.gpus = gpus or GpuCollector()
        self.system = system or SystemProbe()
        self.client = client or ServerClient(self.server_url, wait=self.stop_event.wait)
        self.terminals = TerminalManager(
            self.runtime, self.server_url, node_token=lambda: self.client.node_token
        )
        self.runner = CommandRunner(self.runtime, terminals=self.terminals)
        self.clock = clock
        self.wall_clock = wall_clock
        # The last heartbeat sequence number sent: every heartbeat carries a larger one (the
        # server refuses a replay). Microseconds of the wall clock, so a restarted agent goes on
        # above its predecessor without keeping a counter on disk.
        self.seq = 0
        self.interval = config.heartbeat_interval
        self.wanted: set[str] | None = None
        self.client.node_token = self.state.token_for(self.server_url)
        self.runtime.node_ids = self.state.managed_node_ids()
        self._docker_down = False
        self._next_measure = self.clock() + config.measure_interval  # nothing to see at start

    # --- start-up ---

    def check_credentials(self) -> None:
        """A saved node token for this server, or a registration token, must exist."""
        if self.client.node_token is None and not self.config.registration_token:
            raise ConfigError(
                "no saved node token for this server and no registration token: set "
                "GPU_AGENT_PROVIDER_KEY (--provider-key) or GPU_AGENT_BOOTSTRAP_TOKEN "
                "(--bootstrap-token)"
            )

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log(logger, logging.INFO, "agent.stopping", signal=signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # --- the loop ---

    def run(self) -> int:
        """Loop until SIGTERM/SIGINT; the process exit code."""
        self.check_credentials()
        log(
            logger,
            logging.INFO,
            "agent.starting",
            version=__version__,
            server=self.server_url,
            state_dir=str(self.config.state_dir),
            registered=self.client.node_token is not None,
        )
        next_tick = self.clock()
        try:
            while not self.stop_event.is_set():
                self.run_cycle()
                next_tick += self.interval
                now = self.clock()
                if now > next_tick:
                    late = now - next_tick
                    skipped = int(late // self.interval) + 1
                    log(
                        logger,
                        logging.WARNING,
                        "loop.overrun",
                        late_s=round(late, 3),
                        interval_s=self.interval,
                        skipped_ticks=skipped,
                    )
                    next_tick += skipped * self.interval
                self.stop_event.wait(max(0.0, next_tick - self.clock()))
        except RegistrationRejectedError as exc:
            log(logger, logging.ERROR, "agent.registration_rejected", error=str(exc))
            self.shutdown()
            return 2
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Give running work a moment, ack what finished, save the state; leave pods be."""
        if not self.runner.wait_idle(SHUTDOWN_GRACE_S):
            log(
                logger,
                logging.WARNING,
                "agent.work_unfinished",
                busy_pods=sorted(self.runner.busy_pods()),
            )
        try:
            self.flush_acks()
        except (ServerUnavailableError, Unauthorized) as exc:
            log(logger, logging.WARNING, "agent.acks_left_pending", error=str(exc))
        self.save_state()
        self.terminals.close_all()
        self.client.close()
        self.runtime.close()
        self.gpus.close()
        log(logger, logging.INFO, "agent.stopped", pending_acks=len(self.state.pending))

    def run_cycle(self) -> None:
        """One tick: (register), ack finished work, heartbeat, dispatch, reconcile, ack."""
        started = self.clock()
        outcome = "ok"
        try:
            if self.client.node_token is None:
                self.register()
            self.flush_acks()
            answer = self.client.heartbeat(self.heartbeat_payload())
            metrics.HEARTBEATS.inc()
            self.handle_answer(answer)
            # Quick commands (stop, logs) finish within the tick and are acked right away.
            self.runner.wait_finished(min(2.0, self.interval / 4))
            self.flush_acks()
        except Unauthorized as exc:
            outcome = "unauthorized"
            log(logger, logging.WARNING, "agent.token_rejected", error=str(exc))
            self.state.forget_node()
            self.client.node_token = None
            self.save_state()
            if not self.config.registration_token:
                raise RegistrationRejectedError(
                    "the node token was refused and there is no registration token to "
                    "register again: set GPU_AGENT_PROVIDER_KEY or GPU_AGENT_BOOTSTRAP_TOKEN"
                ) from exc
        except ServerUnavailableError as exc:
            outcome = "server_unavailable"
            log(logger, logging.WARNING, "agent.server_unavailable", error=str(exc))
        except RequestRejectedError as exc:
            outcome = "rejected"
            error = exc.data.get("error")
            last_seq = error.get("last_seq") if isinstance(error, dict) else None
            if exc.status_code == 409 and isinstance(last_seq, int) and last_seq >= self.seq:
                # Our clock went back (or a copy of ours got in first): continue above it.
                self.seq = last_seq
                log(logger, logging.WARNING, "agent.heartbeat_seq_behind", last_seq=last_seq)
            else:
                log(logger, logging.ERROR, "agent.request_rejected", error=str(exc))
        except RegistrationRejectedError:
            outcome = "registration_rejected"
            raise
        except Exception:  # one bad cycle must not end the agent
            outcome = "error"
            logger.exception("agent.cycle_failed")
        finally:
            metrics.CYCLES.labels(outcome).inc()
            metrics.CYCLE_DURATION.observe(max(0.0, self.clock() - started))

    # --- register ---

    def register(self) -> None:
        report = self.gpus.report()
        payload = {
            "registration_token": self.config.registration_token,
            "hostname": socket.gethostname(),
            "agent_version": __version__,
            "provider_instance_id": self.config.provider_instance_id,
            "system": self.system.info(
                server_url=self.server_url, docker_version=self.runtime.version()
            ),
            "driver_version": report.driver_version,
            "cuda_version": report.cuda_version,
            "gpus": [g.registration() for g in report.gpus],
        }
        try:
            answer = self.client.register(payload)
        except Unauthorized as exc:
            raise RegistrationRejectedError(
                "the server refused the registration token (401): check "
                "GPU_AGENT_PROVIDER_KEY / GPU_AGENT_BOOTSTRAP_TOKEN"
            ) from exc
        node_id, token = answer.get("node_id"), answer.get("node_token")
        if not isinstance(node_id, str) or not isinstance(token, str) or not token:
            raise ServerUnavailableError(
                f"register answer lacks node_id/node_token (fields: {sorted(answer)})"
            )
        self.state.adopt_node(self.server_url, node_id, token)
        self.state.pending.clear()  # acks of an old identity would only be refused
        self.client.node_token = token
        self.runtime.node_ids = self.state.managed_node_ids()
        self.save_state()
        self._set_interval(answer.get("heartbeat_interval"))
        log(logger, logging.INFO, "agent.registered", node_id=node_id, gpus=len(report.gpus))

    # --- heartbeat ---

    def heartbeat_payload(self) -> dict[str, Any]:
        report = self.gpus.report()
        containers = self._container_states()
        reported = {c["pod_id"] for c in containers}
        starting = self.runner.starting_pods()
        # With the engine down nothing is known about the pods: report none rather than
        # calling them all missing.
        expected = set() if self._docker_down else (self.wanted or set())
        for pod_id in sorted(expected - reported - starting):
            containers.append(
                {
                    "pod_id": pod_id,
                    "container_id": None,
                    "state": "missing",
                    "exit_code": None,
                    "started_at": None,
                    "finished_at": None,
                    "error": "",
                }
            )
        metrics.containers_reported([str(c["state"]) for c in containers])
        now = self.wall_clock()
        self.seq = max(self.seq + 1, int(now * 1_000_000))
        payload: dict[str, Any] = {
            "gpus": [g.telemetry() for g in report.gpus],
            "system": self.system.telemetry(),
            "containers": containers,
            "seq": self.seq,
            "sent_at": datetime.fromtimestamp(now, tz=UTC).isoformat(timespec="milliseconds"),
        }
        measured = self._measure()
        if measured is not None:
            volumes, layers = measured
            payload["volumes"] = volumes
            for container in containers:
                if container["pod_id"] in layers:
                    container["disk_used_bytes"] = layers[container["pod_id"]]
        return payload

    def _measure(self) -> tuple[list[dict[str, Any]], dict[str, int]] | None:
        """Disk usage of volumes and containers, every ``measure_interval`` seconds (the
        server compares it with their quotas)."""
        if self._docker_down or self.clock() < self._next_measure:
            return None
        self._next_measure = self.clock() + self.config.measure_interval
        try:
            return self.runtime.measure()
        except ContainerRuntimeError as exc:
            log(logger, logging.WARNING, "runtime.measure_failed", error=str(exc))
            return None

    def _container_states(self) -> list[dict[str, Any]]:
        try:
            states = self.runtime.states()
        except ContainerRuntimeError as exc:
            if not self._docker_down:
                log(logger, logging.ERROR, "runtime.unavailable", error=str(exc))
            self._docker_down = True
            return []
        if self._docker_down:
            log(logger, logging.INFO, "runtime.available")
        self._docker_down = False
        return states

    def handle_answer(self, answer: dict[str, Any]) -> None:
        self._set_interval(answer.get("heartbeat_interval"))
        raw_commands = answer.get("commands")
        commands = [
            parse_command(c) for c in (raw_commands if isinstance(raw_commands, list) else [])
        ]
        starts_now: set[str] = set()
        for command in commands:
            if command is None:
                continue
            if command.type == START_POD:
                starts_now.add(command.pod_id)
            self._dispatch(command)

        wanted = answer.get("wanted_pod_ids")
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            log(logger, logging.ERROR, "agent.wanted_pod_ids_malformed", value=str(wanted)[:200])
            return
        self.wanted = set(wanted)
        self.reconcile(self.wanted | starts_now)

    def _dispatch(self, command: Command) -> None:
        if command.id in self.state.acked:
            body = self.state.acked[command.id]
            if body is not None or command.type != FETCH_LOGS:
                # Seen and acked before: answer the same again, never act twice.
                log(
                    logger,
                    logging.INFO,
                    "command.replayed",
                    command_id=command.id,
                    request_id=command.request_id,
                )
                self.state.pending[command.id] = {
                    "type": command.type,
                    **command.request_fields(),
                    "body": body or {"status": "succeeded", "result": {}, "error": ""},
                }
                return
        if command.id in self.state.pending or self.runner.is_in_flight(command.id):
            return
        node_id = self.state.node_id or ""
        self.runner.submit(command, node_id)

    def reconcile(self, keep: set[str]) -> None:
        """Remove managed containers the server no longer wants (not while work is queued)."""
        try:
            managed = self.runtime.managed_pod_ids()
        except ContainerRuntimeError:
            return
        busy = self.runner.busy_pods() | self.runner.starting_pods()
        for pod_id in sorted(managed - keep - busy):
            log(logger, logging.INFO, "reconcile.unwanted", pod_id=pod_id)
            self.runner.submit_removal(pod_id)

    # --- acks ---

    def flush_acks(self) -> None:
        """Ack every finished command; what cannot be acked now stays queued for next cycle."""
        finished = self.runner.take_finished()
        for command, body in finished:
            self.state.pending[command.id] = {
                "type": command.type,
                "body": body,
                **command.request_fields(),
            }
        if finished:
            self.save_state()
        if not self.state.pending or self.client.node_token is None:
            return
        changed = False
        try:
            for command_id, item in list(self.state.pending.items()):
                body = item.get("body") or {}
                try:
                    self.client.ack(command_id, body)
                except RequestRejectedError as exc:
                    # 404: a command of another node; 400: our body is wrong. Retrying cannot
                    # help either, and the command must not run again if it is sent again.
                    log(
                        logger,
                        logging.ERROR,
                        "ack.rejected",
                        command_id=command_id,
                        request_id=item.get("request_id"),
                        error=str(exc),
                    )
                else:
                    log(
                        logger,
                        logging.INFO,
                        "ack.sent",
                        command_id=command_id,
                        request_id=item.get("request_id"),
                        status=body.get("status"),
                    )
                keep_body = None if item.get("type") == FETCH_LOGS else body
                self.state.remember_ack(command_id, keep_body)
                del self.state.pending[command_id]
                changed = True
        finally:
            if changed:
                self.save_state()

    # --- helpers ---

    def _set_interval(self, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        interval = float(min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, value)))
        if interval != self.interval:
            log(logger, logging.INFO, "agent.interval_changed", interval_s=interval)
            self.interval = interval

    def save_state(self) -> None:
        try:
            self.store.save(self.state)
        except OSError as exc:
            log(
                logger,
                logging.ERROR,
                "state.save_failed",
                path=str(self.store.path),
                error=str(exc),
            )

"""Writes for GPU hosts (DESIGN.md §4–5), by job:

- `enrolment`: registration (a node and its token);
- `heartbeats`: heartbeats (telemetry, container reports, coming back, command delivery);
- `commands`: queueing and acknowledging agent commands;
- `workloads`: what each node should run;
- `operator_actions`: drain, undrain, retire, price and share;
- `sweep`: the liveness sweep (SUSPECT, OFFLINE after the grace, the mass-silence guard).

This module keeps the names callers have always imported from it."""

from apps.nodes.commands import CommandNotFoundError as CommandNotFoundError
from apps.nodes.commands import command_ack as command_ack
from apps.nodes.commands import command_enqueue as command_enqueue
from apps.nodes.enrolment import NODE_TOKEN_PREFIX as NODE_TOKEN_PREFIX
from apps.nodes.enrolment import RegisteredNode as RegisteredNode
from apps.nodes.enrolment import RegistrationTokenSpentError as RegistrationTokenSpentError
from apps.nodes.enrolment import node_register as node_register
from apps.nodes.heartbeats import TELEMETRY_FIELDS as TELEMETRY_FIELDS
from apps.nodes.heartbeats import HeartbeatAnswer as HeartbeatAnswer
from apps.nodes.heartbeats import node_heartbeat as node_heartbeat
from apps.nodes.operator_actions import node_drain as node_drain
from apps.nodes.operator_actions import node_price_set as node_price_set
from apps.nodes.operator_actions import node_retire as node_retire
from apps.nodes.operator_actions import node_share_set as node_share_set
from apps.nodes.operator_actions import node_undrain as node_undrain
from apps.nodes.sweep import liveness_guard_release as liveness_guard_release
from apps.nodes.sweep import nodes_mark_silent_offline as nodes_mark_silent_offline
from apps.nodes.sweep import nodes_sweep_liveness as nodes_sweep_liveness
from apps.nodes.workloads import FRESH_START as FRESH_START
from apps.nodes.workloads import workload_start as workload_start
from apps.nodes.workloads import workload_stop as workload_stop
from apps.nodes.workloads import workloads_start as workloads_start

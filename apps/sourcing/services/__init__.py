"""ProvisioningService (DESIGN.md §4, §7): rent a machine for a pod that no node of ours
fits, watch it boot until our agent registers from it, terminate it when it is no longer
needed, and book what it cost.

Upstream HTTP never runs inside a database transaction: each step claims its rows in one
short transaction (status moves first, so a second worker skips them), talks to the
provider, then records the answer in another. Every step is safe to run twice at once and
safe to kill halfway: a create killed before its answer was recorded is found again by its
label, and reconciliation terminates whatever nobody tracks."""

from apps.sourcing.services.common import sourcing_on
from apps.sourcing.services.containers import container_follow, pod_logs, pod_release
from apps.sourcing.services.costs import accrue_upstream_costs, margins_by
from apps.sourcing.services.provisioning import (
    bootstrap_script,
    instance_activate,
    instance_provision,
    instance_request,
)
from apps.sourcing.services.reconcile import ReconcileResult, reconcile
from apps.sourcing.services.terminate import instance_terminate
from apps.sourcing.services.tick import (
    TickResult,
    instance_fail,
    provisioning_tick,
)

__all__ = [
    "ReconcileResult",
    "TickResult",
    "accrue_upstream_costs",
    "bootstrap_script",
    "container_follow",
    "pod_logs",
    "pod_release",
    "instance_activate",
    "instance_fail",
    "instance_provision",
    "instance_request",
    "instance_terminate",
    "margins_by",
    "provisioning_tick",
    "reconcile",
    "sourcing_on",
]

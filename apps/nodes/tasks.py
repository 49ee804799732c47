from celery import shared_task

from apps.nodes.sweep import nodes_sweep_liveness


@shared_task(name="nodes.mark_silent_offline", ignore_result=True)
def mark_silent_offline() -> int:
    """The liveness sweep (apps/nodes/sweep.py): SUSPECT, OFFLINE after the grace, the guard."""
    return len(nodes_sweep_liveness().offline)

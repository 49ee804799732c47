from celery import shared_task

from apps.nodes.services import nodes_mark_silent_offline


@shared_task(name="nodes.mark_silent_offline", ignore_result=True)
def mark_silent_offline() -> int:
    return len(nodes_mark_silent_offline())

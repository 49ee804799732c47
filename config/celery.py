"""Celery app. The periodic schedule lives in `apps.core.schedule` and is synced into
django-celery-beat's database scheduler by `manage.py sync_schedule`.

Signals (docs/observability.md): a published task carries its publisher's request id in a
message header and runs under it; every task's run time and outcome are metrics."""

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("gco")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.before_task_publish.connect
def _stamp_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from apps.core.request_context import celery_before_publish

    celery_before_publish(headers=headers)


@signals.task_prerun.connect
def _task_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    from apps.core import metrics
    from apps.core.request_context import celery_task_prerun

    celery_task_prerun(task=task, task_id=task_id)
    metrics.task_started(task_id)


@signals.task_postrun.connect
def _task_postrun(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    from apps.core import metrics
    from apps.core.request_context import celery_task_postrun

    celery_task_postrun(task_id=task_id)
    outcome = (state or "UNKNOWN").lower()
    metrics.task_finished(task_id=task_id, task_name=getattr(task, "name", "?"), outcome=outcome)


@signals.worker_process_shutdown.connect
def _forget_dead_process(pid: int | None = None, **_: Any) -> None:
    """Multi-process metrics: a pool child that exits leaves its counters (summed on), and
    its live gauges are dropped."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())

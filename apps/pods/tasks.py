from celery import shared_task

from apps.pods.metering import meter_tick
from apps.pods.scheduler import schedule_pending
from apps.pods.storage_billing import storage_bill_tick


@shared_task(name="pods.schedule_pending", ignore_result=True)
def schedule_pending_pods() -> int:
    return schedule_pending().placed


@shared_task(name="pods.bill_running", ignore_result=True)
def bill_running_pods() -> int:
    return meter_tick().records


@shared_task(name="pods.bill_storage", ignore_result=True)
def bill_volume_storage() -> int:
    return storage_bill_tick().charged

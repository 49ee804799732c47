import uuid

from celery import shared_task

from apps.sourcing import offer_book, services


@shared_task(name="sourcing.refresh_offers", ignore_result=True)
def refresh_offers() -> int:
    return offer_book.offer_book_refresh().offers


@shared_task(name="sourcing.provision_instance", ignore_result=True)
def provision_instance(instance_id: str) -> str | None:
    instance = services.instance_provision(instance_id=uuid.UUID(instance_id))
    return instance.status if instance else None


@shared_task(name="sourcing.provisioning_tick", ignore_result=True)
def provisioning_tick() -> int:
    return services.provisioning_tick().provisioned


@shared_task(name="sourcing.reconcile", ignore_result=True)
def reconcile() -> int:
    return services.reconcile().orphans_terminated


@shared_task(name="sourcing.accrue_upstream_costs", ignore_result=True)
def accrue_upstream_costs() -> int:
    return services.accrue_upstream_costs()


@shared_task(name="sourcing.release_pod", ignore_result=True)
def release_pod(pod_id: str) -> int:
    return services.pod_release(pod_id=uuid.UUID(pod_id))

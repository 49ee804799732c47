from celery import shared_task

from apps.sourcing import offer_book, services


@shared_task(name="sourcing.refresh_offers", ignore_result=True)
def refresh_offers() -> int:
    return offer_book.offer_book_refresh().offers


@shared_task(name="sourcing.provisioning_tick", ignore_result=True)
def provisioning_tick() -> int:
    return services.provisioning_tick().provisioned


@shared_task(name="sourcing.reconcile", ignore_result=True)
def reconcile() -> int:
    return services.reconcile().orphans_terminated


@shared_task(name="sourcing.accrue_upstream_costs", ignore_result=True)
def accrue_upstream_costs() -> int:
    return services.accrue_upstream_costs()

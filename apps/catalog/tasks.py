"""Periodic deployment work (declared in apps/core/schedule.py). Thin: each calls one service,
and each is safe to run twice at once."""

from celery import shared_task

from apps.catalog.services import autoscale, health, provisioning


@shared_task(name="catalog.provision_pending", ignore_result=True)
def provision_pending_deployments() -> int:
    return provisioning.deployments_provision_pending().replicas_created


@shared_task(name="catalog.health_check", ignore_result=True)
def check_deployment_health() -> int:
    return health.replicas_health_check().checked


@shared_task(name="catalog.sync_status", ignore_result=True)
def sync_deployment_status() -> int:
    return provisioning.deployments_sync_status()


@shared_task(name="catalog.autoscale", ignore_result=True)
def autoscale_deployments() -> int:
    return autoscale.deployments_autoscale().decisions

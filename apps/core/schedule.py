"""The periodic schedule (DESIGN.md §10), declared once in code. `manage.py sync_schedule`
writes it into django-celery-beat's tables idempotently: entries are created or updated, and
entries of ours that left this list are deleted. Each entry expires after ~1.5x its interval so
a backlog never runs stale copies."""

from dataclasses import dataclass


@dataclass(frozen=True)
class PeriodicEntry:
    name: str
    task: str
    every_seconds: int

    @property
    def expires_seconds(self) -> int:
        return max(1, int(self.every_seconds * 1.5))


SCHEDULE: tuple[PeriodicEntry, ...] = (
    PeriodicEntry("node liveness sweep", "nodes.mark_silent_offline", 10),
    PeriodicEntry("schedule pending pods", "pods.schedule_pending", 15),
    PeriodicEntry("bill running pods", "pods.bill_running", 60),
    PeriodicEntry("bill volume storage", "pods.bill_storage", 60),
    PeriodicEntry("ledger consistency check", "billing.ledger_check", 3600),
    PeriodicEntry("reconcile the ledger with Stripe", "billing.reconcile_stripe", 86400),
    PeriodicEntry("purge expired idempotency keys", "core.purge_idempotency_keys", 3600),
    PeriodicEntry("send approved payouts", "providers.send_payouts", 60),
    PeriodicEntry("settle sent payouts", "providers.settle_payouts", 300),
    PeriodicEntry("payouts clearing check", "providers.check_payouts_clearing", 3600),
    PeriodicEntry("refresh upstream offers", "sourcing.refresh_offers", 60),
    PeriodicEntry("drive provisioned instances", "sourcing.provisioning_tick", 10),
    PeriodicEntry("reconcile provisioned instances with providers", "sourcing.reconcile", 60),
    PeriodicEntry("book upstream costs", "sourcing.accrue_upstream_costs", 60),
    PeriodicEntry("provision pending deployments", "catalog.provision_pending", 30),
    PeriodicEntry("check deployment health", "catalog.health_check", 30),
    PeriodicEntry("sync deployment status from pods", "catalog.sync_status", 15),
    PeriodicEntry("autoscale deployments", "catalog.autoscale", 2),
    PeriodicEntry("retry due webhook deliveries", "webhooks.retry_due", 60),
    PeriodicEntry("low-balance webhooks", "webhooks.check_low_balances", 300),
)

NAME_PREFIX = "gco: "

"""The periodic sourcing work is declared in the schedule and runs as Celery tasks."""

import pytest

from apps.core.schedule import SCHEDULE

pytestmark = pytest.mark.django_db


def test_schedule_names_registered_tasks():
    from config.celery import app

    app.loader.import_default_modules()
    ours = {e.task: e.every_seconds for e in SCHEDULE if e.task.startswith("sourcing.")}
    assert ours == {
        "sourcing.refresh_offers": 60,
        "sourcing.provisioning_tick": 10,
        "sourcing.reconcile": 60,
        "sourcing.accrue_upstream_costs": 60,
    }
    assert set(ours) <= set(app.tasks)


def test_tasks_run_and_do_nothing_upstream_when_sourcing_is_off(sourcing, settings):
    from apps.sourcing import tasks

    settings.SOURCING_ENABLED = False
    settings.AUTO_PROVISIONING_ENABLED = False
    assert tasks.refresh_offers() == 0
    assert tasks.provisioning_tick() == 0
    assert tasks.reconcile() == 0
    assert tasks.accrue_upstream_costs() == 0
    assert sum(sim.control.stats().get("total", 0) for sim in sourcing.values()) == 0

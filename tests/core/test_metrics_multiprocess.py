"""Multi-process mode: separate processes (as web workers and Celery workers are) write their
values to PROMETHEUS_MULTIPROC_DIR, and `/metrics` answers their sum."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "multiprocess-token"
WRITER = """
import sys
from apps.core import metrics
metrics.PLACEMENTS.inc(int(sys.argv[1]))
metrics.observe_http(method="GET", route="/x", status=200, seconds=0.01)
"""


def test_scrape_sums_every_process(client, settings, monkeypatch, tmp_path):
    settings.METRICS_TOKEN_SHA256 = hashlib.sha256(TOKEN.encode()).hexdigest()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for placed in (2, 3):
        subprocess.run([sys.executable, "-c", WRITER, str(placed)], env=env, check=True, cwd=ROOT)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert samples[("gco_scheduler_placements_total", ())] == 5
    labels = (("method", "GET"), ("route", "/x"), ("status", "200"))
    assert samples[("gco_http_requests_total", labels)] == 2
    # the database gauges are there too, read at scrape time
    assert ("gco_ledger_balanced", ()) in samples

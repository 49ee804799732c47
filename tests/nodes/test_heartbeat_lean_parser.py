"""The lean heartbeat path's parser (apps/nodes/heartbeat_lean.py) against the serializer it
stands in for: whatever it takes, HeartbeatInput takes too and reads the same; anything it
refuses goes to the full path, whose serializer judges it."""

import json
import uuid
from datetime import datetime

import pytest

from apps.nodes.heartbeat_lean import NotLeanError, parse_beat
from apps.nodes.serializers import HeartbeatInput
from tests.factories import heartbeat_body


def _variants():
    """Heartbeat bodies around the edges of HeartbeatInput."""
    pod = str(uuid.uuid4())
    container = {"pod_id": pod, "container_id": "c", "state": "running", "exit_code": None}

    def body(**changes):
        base = heartbeat_body(
            seq=7, sent_at="2026-12-04T10:00:00+00:00", containers=[dict(container)]
        )
        for path, value in changes.items():
            target = base
            *parents, last = path.split(".")
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            if value is KeyError:
                del target[last]
            else:
                target[last] = value
        return base

    return {
        "as agents send": body(),
        "unknown field": body(extra=1),
        "no seq": body(seq=KeyError),
        "seq 0": body(seq=0),
        "seq true": body(seq=True),
        "naive sent_at": body(sent_at="2026-12-04T10:00:00"),
        "bad sent_at": body(sent_at="yesterday"),
        "index float": body(**{"gpus.0.index": 0.0}),
        "index 256": body(**{"gpus.0.index": 256}),
        "utilization 100.5": body(**{"gpus.0.utilization_pct": 100.5}),
        "utilization null": body(**{"gpus.0.utilization_pct": None}),
        "utilization missing": body(**{"gpus.0.utilization_pct": KeyError}),
        "power bool": body(**{"gpus.0.power_w": False}),
        "uuid number": body(**{"gpus.0.uuid": 5}),
        "uuid padded": body(**{"gpus.0.uuid": " GPU-1 "}),
        "system extra": body(**{"system.swap": 1}),
        "system null load": body(**{"system.load_avg": None}),
        "pod_id not uuid": body(**{"containers.0.pod_id": "nope"}),
        "state unknown": body(**{"containers.0.state": "zombie"}),
        "container_id null": body(**{"containers.0.container_id": None}),
        "container_id NUL": body(**{"containers.0.container_id": "a\x00b"}),
        "error null": body(**{"containers.0.error": None}),
        "started_at": body(**{"containers.0.started_at": "2026-11-26T10:00:00Z"}),
        "disk bytes": body(**{"containers.0.disk_used_bytes": 10}),
        "volumes": body(volumes=[{"name": "gco-vol-1", "used_bytes": 5}]),
        "volumes bad": body(volumes=[{"name": "", "used_bytes": 5}]),
        "gpus not a list": body(gpus={}),
    }


# Bodies agents send: these must be served by the lean path.
LEAN = {
    "as agents send",
    "utilization null",
    "system null load",
    "container_id null",
    "started_at",
    "disk bytes",
    "volumes",
}


@pytest.mark.parametrize("name", sorted(_variants()))
def test_the_lean_parser_takes_only_what_the_serializer_takes_and_reads_it_alike(name):
    body = _variants()[name]
    serializer = HeartbeatInput(data=body)
    try:
        beat = parse_beat(json.dumps(body).encode())
    except NotLeanError:
        assert name not in LEAN, "a body agents send must take the lean path"
        return  # the full path judges it
    assert serializer.is_valid(), serializer.errors
    data = serializer.validated_data
    assert (beat.seq, beat.sent_at) == (data["seq"], data["sent_at"])
    assert [g[0] for g in beat.gpus] == [g["index"] for g in data["gpus"]]
    assert beat.gpus[0][1:] == tuple(
        data["gpus"][0][k] for k in ("memory_used_mb", "utilization_pct", "temperature_c")
    ) + (data["gpus"][0]["power_w"],)
    assert beat.system == tuple(
        data["system"][k] for k in ("cpu_percent", "ram_used_mb", "disk_free_gb", "load_avg")
    )
    for parsed, validated in zip(beat.containers, data["containers"], strict=True):
        assert parsed["pod_id"] == str(validated["pod_id"])
        assert parsed["container_id"] == (validated["container_id"] or "")
        assert parsed["state"] == validated["state"]
        assert parsed["exit_code"] == validated["exit_code"]
        assert parsed["error"] == validated["error"]
        assert parsed["disk_used_bytes"] == validated.get("disk_used_bytes")
        started = validated.get("started_at")
        assert parsed["started_at"] == (started.isoformat() if started else None) or (
            datetime.fromisoformat(parsed["started_at"]) == started
        )
    assert beat.volumes == data["volumes"]

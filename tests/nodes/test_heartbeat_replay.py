"""Heartbeats from agent 0.2.0 on carry `seq` and `sent_at`: a replayed or stale one is refused
(and logged with node, reason and source); a node registered by an older agent that sends
neither keeps working (docs/agent-protocol.md says why)."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.nodes.models import Node
from apps.nodes.services import node_retire
from tests.factories import h100_registration, heartbeat_body

pytestmark = pytest.mark.django_db


def register(api_client, version):
    response = api_client.post(
        "/api/v1/nodes/register", h100_registration(agent_version=version), format="json"
    )
    assert response.status_code == 201
    return response.json()["node_id"], response.json()["node_token"]


def beat(api_client, token, **fields):
    return api_client.post(
        "/api/v1/nodes/heartbeat",
        heartbeat_body(**fields),
        format="json",
        HTTP_X_AGENT_API_KEY=token,
        REMOTE_ADDR="203.0.113.9",
    )


def stamp(seq, *, skew_s=0.0):
    return {"seq": seq, "sent_at": (timezone.now() + timedelta(seconds=skew_s)).isoformat()}


def test_a_replayed_heartbeat_is_refused_and_logged(api_client, caplog):
    node_id, token = register(api_client, "0.2.0")
    captured = stamp(1_000)
    assert beat(api_client, token, **captured).status_code == 200
    assert beat(api_client, token, **stamp(1_001)).status_code == 200

    with caplog.at_level(logging.WARNING, logger="apps.nodes.refusals"):
        replay = beat(api_client, token, **captured)

    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "heartbeat_replayed"
    assert replay.json()["error"]["last_seq"] == 1_001
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.nodes.refusals"]
    assert f"node={node_id}" in line and "replayed" in line and "source=203.0.113.9" in line
    assert Node.objects.get(pk=node_id).last_heartbeat_seq == 1_001


def test_a_heartbeat_outside_the_window_is_refused(api_client):
    _, token = register(api_client, "0.2.0")
    stale = beat(api_client, token, **stamp(5, skew_s=-301))
    ahead = beat(api_client, token, **stamp(6, skew_s=400))
    assert (stale.status_code, ahead.status_code) == (400, 400)
    assert "301 s behind" in stale.json()["error"]["message"]
    assert "NTP" in ahead.json()["error"]["message"]
    assert beat(api_client, token, **stamp(7)).status_code == 200


def test_a_new_agent_must_send_both(api_client):
    _, token = register(api_client, "0.2.0")
    response = beat(api_client, token)
    assert response.status_code == 400
    assert "seq and sent_at are required" in response.json()["error"]["message"]


def test_a_node_registered_by_an_old_agent_keeps_beating_without_them(api_client):
    _, token = register(api_client, "0.1.0")
    assert beat(api_client, token).status_code == 200
    assert beat(api_client, token).status_code == 200
    # and if it sends them anyway, they are checked
    assert beat(api_client, token, **stamp(10)).status_code == 200
    assert beat(api_client, token, **stamp(10)).status_code == 409


def test_re_registering_starts_a_new_sequence(api_client):
    _, token = register(api_client, "0.2.0")
    assert beat(api_client, token, **stamp(10**15)).status_code == 200
    _, new_token = register(api_client, "0.2.0")  # same GPUs: the same node, re-keyed
    assert beat(api_client, new_token, **stamp(1)).status_code == 200


def test_an_unknown_node_token_is_logged(api_client, caplog):
    with caplog.at_level(logging.WARNING, logger="apps.nodes.refusals"):
        response = beat(api_client, "nt_forged-token-that-nobody-issued")
    assert response.status_code == 401
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.nodes.refusals"]
    assert "node=unknown" in line and "unknown or revoked node token" in line
    assert "source=203.0.113.9" in line and "forged-token-that" not in line


def test_a_retired_nodes_token_is_refused_and_logged_with_the_node(api_client, caplog):
    node_id, token = register(api_client, "0.2.0")
    node_retire(node=Node.objects.get(pk=node_id))
    with caplog.at_level(logging.WARNING, logger="apps.nodes.refusals"):
        response = beat(api_client, token, **stamp(1))
    assert response.status_code == 401
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.nodes.refusals"]
    assert f"node={node_id}" in line and "retired" in line and "source=203.0.113.9" in line

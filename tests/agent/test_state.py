"""The saved state: token file permissions, atomic rewrite, bounded memory of acked commands."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.state import MAX_REMEMBERED_ACKS, AgentState, StateStore


def test_state_file_is_private(tmp_path: Path) -> None:
    # given a state directory that does not exist yet
    store = StateStore(tmp_path / "agent-state")

    # when a node token is saved
    store.save(AgentState(server_url="http://127.0.0.1:8000", node_id="n1", node_token="nt_x"))

    # then the file is 0600 in a 0700 directory
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert list(store.dir.iterdir()) == [store.path]  # no temporary file left


def test_permissions_are_tightened_on_rewrite(tmp_path: Path) -> None:
    # given a state file someone loosened
    store = StateStore(tmp_path)
    store.save(AgentState(node_token="nt_1", server_url="http://s"))
    store.path.chmod(0o644)
    tmp_path.chmod(0o755)

    # when it is saved again
    store.save(AgentState(node_token="nt_2", server_url="http://s"))

    # then it is private again and holds the new token
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert store.load().node_token == "nt_2"


def test_round_trip_and_token_scoped_to_server(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = AgentState(server_url="http://a:1", node_id="n1", node_token="nt_a")
    state.remember_ack("cmd-1", {"status": "succeeded", "result": {}, "error": ""})
    state.remember_ack("cmd-2", None)
    state.pending["cmd-3"] = {"type": "stop_pod", "body": {"status": "failed"}}
    store.save(state)

    loaded = store.load()

    assert loaded.token_for("http://a:1") == "nt_a"
    assert loaded.token_for("http://b:1") is None  # a token is only good for its server
    assert list(loaded.acked) == ["cmd-1", "cmd-2"]
    assert loaded.acked["cmd-2"] is None
    assert loaded.pending == {"cmd-3": {"type": "stop_pod", "body": {"status": "failed"}}}


def test_remembered_acks_are_bounded(tmp_path: Path) -> None:
    state = AgentState()
    for i in range(MAX_REMEMBERED_ACKS + 25):
        state.remember_ack(f"cmd-{i}", None)
    assert len(state.acked) == MAX_REMEMBERED_ACKS
    assert "cmd-0" not in state.acked  # the oldest are forgotten first
    assert f"cmd-{MAX_REMEMBERED_ACKS + 24}" in state.acked


def test_unreadable_state_starts_fresh(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    assert StateStore(tmp_path).load() == AgentState()


def test_a_new_identity_keeps_the_old_ones_containers(tmp_path: Path) -> None:
    # given a host registered as n1 whose token was then refused
    state = AgentState()
    state.adopt_node("http://s", "n1", "nt_1")
    state.forget_node()

    # when it registers again and gets n2
    state.adopt_node("http://s", "n2", "nt_2")
    StateStore(tmp_path).save(state)

    # then containers of both identities are still its to reconcile, across a restart
    assert StateStore(tmp_path).load().managed_node_ids() == {"n1", "n2"}

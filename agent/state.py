"""What the agent keeps between runs: its node token and the commands it has acked.

One JSON file, ``<state dir>/state.json``, mode 0600 in a 0700 directory, written atomically
(temporary file + rename) so a crash never leaves half a token behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.log import log

logger = logging.getLogger("agent.state")

STATE_FILE = "state.json"
MAX_REMEMBERED_ACKS = 500
MAX_FORMER_NODE_IDS = 20


@dataclass
class AgentState:
    """The node identity and the command bookkeeping that must survive a restart.

    ``acked`` maps a command id to the ack body that was accepted (``None`` when the body was
    not worth keeping, e.g. logs); ``pending`` holds ack bodies not yet accepted by the server.
    ``former_node_ids`` are identities this host registered as before: their containers are
    still this agent's to reconcile.
    """

    server_url: str | None = None
    node_id: str | None = None
    node_token: str | None = None
    acked: OrderedDict[str, dict[str, Any] | None] = field(default_factory=OrderedDict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    former_node_ids: list[str] = field(default_factory=list)

    def token_for(self, server_url: str | None) -> str | None:
        """The saved node token, only if it was issued by ``server_url``."""
        if self.node_token and server_url and self.server_url == server_url:
            return self.node_token
        return None

    def remember_ack(self, command_id: str, body: dict[str, Any] | None) -> None:
        self.acked[command_id] = body
        self.acked.move_to_end(command_id)
        while len(self.acked) > MAX_REMEMBERED_ACKS:
            self.acked.popitem(last=False)

    def forget_node(self) -> None:
        """Drop the token; the node id is kept so the next identity can succeed it."""
        self.node_token = None

    def adopt_node(self, server_url: str, node_id: str, node_token: str) -> None:
        """Take a new identity; the previous one's containers stay ours to reconcile."""
        if self.node_id and self.node_id != node_id and self.node_id not in self.former_node_ids:
            self.former_node_ids = [*self.former_node_ids, self.node_id][-MAX_FORMER_NODE_IDS:]
        self.server_url = server_url
        self.node_id = node_id
        self.node_token = node_token

    def managed_node_ids(self) -> set[str]:
        return {*self.former_node_ids, *([self.node_id] if self.node_id else [])}


class StateStore:
    """Loads and saves ``AgentState`` under one directory."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE

    def load(self) -> AgentState:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return AgentState()
        except (OSError, ValueError) as exc:
            log(logger, logging.WARNING, "state.unreadable", path=str(self.path), error=str(exc))
            return AgentState()
        if not isinstance(raw, dict):
            return AgentState()
        state = AgentState(
            server_url=_str_or_none(raw.get("server_url")),
            node_id=_str_or_none(raw.get("node_id")),
            node_token=_str_or_none(raw.get("node_token")),
        )
        acked = raw.get("acked")
        if isinstance(acked, list):
            for item in acked:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    body = item.get("body")
                    state.remember_ack(item["id"], body if isinstance(body, dict) else None)
        former = raw.get("former_node_ids")
        if isinstance(former, list):
            state.former_node_ids = [x for x in former if isinstance(x, str)]
        pending = raw.get("pending")
        if isinstance(pending, dict):
            state.pending = {
                k: v for k, v in pending.items() if isinstance(k, str) and isinstance(v, dict)
            }
        return state

    def save(self, state: AgentState) -> None:
        """Write atomically with mode 0600; the directory is made (or tightened) to 0700."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        data = {
            "server_url": state.server_url,
            "node_id": state.node_id,
            "node_token": state.node_token,
            "acked": [{"id": k, "body": v} for k, v in state.acked.items()],
            "pending": state.pending,
            "former_node_ids": state.former_node_ids,
        }
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

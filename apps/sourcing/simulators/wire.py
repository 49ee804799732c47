"""What a simulator's routes take and give (SimRequest, SimResponse) and the faults a test can
inject into them (Fault). No Django here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# --- requests and responses ------------------------------------------------------------------


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (a lost answer)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **headers: str) -> SimResponse:
        return cls(
            status=status,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **headers},
        )

    @classmethod
    def text(cls, text: str, status: int, **headers: str) -> SimResponse:
        return cls(
            status=status, body=text.encode(), headers={"Content-Type": "text/plain", **headers}
        )


@dataclass
class Fault:
    """`kind`: status (answer `status`), rate_limit, timeout (sleep `seconds`, then answer),
    capacity, auth, account, invalid, malformed, lost_answer (act, then drop the connection),
    stale_offer (searches list an offer that is already gone), graphql_error (RunPod: 200 with
    errors).
    `op`: offers, create, get, list, terminate, or * for any. `count` < 0: until cleared."""

    op: str
    kind: str
    count: int = 1
    status: int = 503
    seconds: float = 30.0


Handler = Callable[[SimRequest, re.Match[str]], SimResponse]

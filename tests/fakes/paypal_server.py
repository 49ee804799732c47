"""A fake of PayPal's Payouts API (REST v1), as a real HTTP server on 127.0.0.1 speaking
PayPal's wire format, for the real client in apps.providers.gateways.paypal:

- `POST /v1/oauth2/token`: HTTP Basic `client_id:secret`, form body
  `grant_type=client_credentials`; answers `{"scope", "access_token", "token_type": "Bearer",
  "app_id", "expires_in", "nonce"}`, or 401 `{"error": "invalid_client", …}`.
- `POST /v1/payments/payouts` (`Authorization: Bearer …`, JSON): `sender_batch_header` and
  `items` (`recipient_type`, `amount: {value, currency}`, `receiver`, `note`,
  `sender_item_id`). 201 with `batch_header` (`payout_batch_id`, `batch_status: PENDING`,
  `sender_batch_header`) and HATEOAS `links`. A `sender_batch_id` used before is a 400
  `USER_BUSINESS_ERROR` whose details name `SENDER_BATCH_ID` and whose links point at the
  original batch; a malformed body a 400 `VALIDATION_ERROR` with per-field `details`.
- `GET /v1/payments/payouts/{payout_batch_id}`: the batch header and its `items`, each with
  `payout_item_id`, `transaction_status`, `transaction_id` (once paid), `payout_item`, `errors`
  (once failed). Unknown ids: 404 `INVALID_RESOURCE_ID`.
- An unknown or expired token: 401 `{"error": "invalid_token", …}`.

Tests drive the outcome: `settle(batch_id, "SUCCESS" | "FAILED" | "UNCLAIMED" | …)`,
`fail_next(status)` (the next payouts call answers that 5xx), `expire_tokens()`.
"""

import base64
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_AMOUNT = re.compile(r"^\d{1,10}(\.\d{1,2})?$")


def _id(length: int = 13) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakePayPal:
    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    base_url: str = ""
    tokens: set[str] = field(default_factory=set)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_sender_id: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    token_requests: int = 0
    _fail_next: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- test controls ------------------------------------------------------------------------
    def fail_next(self, status: int = 503) -> None:
        self._fail_next.append(status)

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def settle(self, batch_id: str, item_status: str) -> None:
        """The batch's item reaches `item_status` (SUCCESS, FAILED, UNCLAIMED, RETURNED…)."""
        with self.lock:
            batch = self.batches[batch_id]
            item = batch["items"][0]
            item["transaction_status"] = item_status
            item["time_processed"] = _now()
            if item_status == "SUCCESS":
                item["transaction_id"] = _id(17)
            if item_status in ("FAILED", "RETURNED", "BLOCKED"):
                item["errors"] = {
                    "name": "RECEIVER_UNREGISTERED",
                    "message": "Receiver is unregistered",
                    "information_link": "https://developer.paypal.com/docs/api/payments.payouts-batch/#errors",
                }
            header = batch["batch_header"]
            header["batch_status"] = "SUCCESS" if item_status != "PENDING" else "PROCESSING"
            header["time_completed"] = _now()

    def batch_for(self, sender_batch_id: str) -> dict[str, Any]:
        return self.batches[self.by_sender_id[sender_batch_id]]

    # --- the API ------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path, headers, body.decode(errors="replace")))
        if method == "POST" and path == "/v1/oauth2/token":
            return self._token(headers, body)
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, {
                "error": "invalid_token",
                "error_description": "Token signature verification failed",
            }
        if self._fail_next:
            status = self._fail_next.pop(0)
            return status, {
                "name": "INTERNAL_SERVER_ERROR",
                "message": "An internal server error has occurred.",
                "debug_id": _id(13).lower(),
            }
        if method == "POST" and path == "/v1/payments/payouts":
            try:
                payload = json.loads(body)
            except ValueError:
                return 400, {
                    "name": "MALFORMED_REQUEST",
                    "message": "Incoming JSON request does not map to API request",
                }
            return self._create(payload)
        match = re.fullmatch(r"/v1/payments/payouts/([A-Z0-9]+)", path)
        if method == "GET" and match:
            with self.lock:
                batch = self.batches.get(match.group(1))
                if batch is None:
                    return 404, {
                        "name": "INVALID_RESOURCE_ID",
                        "message": "Requested resource ID was not found.",
                        "debug_id": _id(13).lower(),
                    }
                return 200, json.loads(json.dumps(batch))
        return 404, {"name": "NOT_FOUND", "message": "The specified resource does not exist."}

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = dict(parse_qsl(body.decode()))
        if headers.get("authorization") != f"Basic {expected}":
            return 401, {
                "error": "invalid_client",
                "error_description": "Client Authentication failed",
            }
        if form.get("grant_type") != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Grant Type is NULL",
            }
        token = "A21AA" + secrets.token_urlsafe(40)
        with self.lock:
            self.tokens.add(token)
        return 200, {
            "scope": "https://uri.paypal.com/services/payouts https://api.paypal.com/v1/payments/.*",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": 32400,
            "nonce": f"{_now()}{secrets.token_urlsafe(16)}",
        }

    def _create(self, payload: Any) -> tuple[int, dict[str, Any]]:
        details = []
        header = payload.get("sender_batch_header") if isinstance(payload, dict) else None
        items = payload.get("items") if isinstance(payload, dict) else None
        if not isinstance(header, dict):
            details.append(
                {
                    "field": "sender_batch_header",
                    "location": "body",
                    "issue": "Required field missing",
                }
            )
        if not isinstance(items, list) or not items:
            details.append(
                {"field": "items", "location": "body", "issue": "Required field missing"}
            )
        for i, item in enumerate(items if isinstance(items, list) else []):
            kind = item.get("recipient_type") or (header or {}).get("recipient_type")
            amount = item.get("amount") or {}
            if kind != "EMAIL" or not _EMAIL.match(str(item.get("receiver", ""))):
                details.append(
                    {
                        "field": f"items[{i}].receiver",
                        "location": "body",
                        "issue": "Receiver is invalid or does not match with type",
                    }
                )
            if not _AMOUNT.match(str(amount.get("value", ""))) or amount.get("currency") != "USD":
                details.append(
                    {
                        "field": f"items[{i}].amount",
                        "location": "body",
                        "issue": "Currency or value is invalid",
                    }
                )
        if details:
            return 400, {
                "name": "VALIDATION_ERROR",
                "message": "Invalid request - see details",
                "debug_id": _id(13).lower(),
                "information_link": "https://developer.paypal.com/docs/api/payments.payouts-batch/#errors",
                "details": details,
                "links": [],
            }
        assert isinstance(header, dict) and isinstance(items, list)
        sender_batch_id = str(header.get("sender_batch_id") or _id())
        with self.lock:
            if sender_batch_id in self.by_sender_id:
                original = self.by_sender_id[sender_batch_id]
                return 400, {
                    "name": "USER_BUSINESS_ERROR",
                    "message": "User business error.",
                    "debug_id": _id(13).lower(),
                    "information_link": "https://developer.paypal.com/docs/api/payments.payouts-batch/#errors",
                    "details": [
                        {
                            "field": "SENDER_BATCH_ID",
                            "location": "body",
                            "issue": "Batch with given sender_batch_id already exists",
                        }
                    ],
                    "links": [
                        {
                            "href": f"{self.base_url}/v1/payments/payouts/{original}",
                            "rel": "self",
                            "method": "GET",
                            "encType": "application/json",
                        }
                    ],
                }
            batch_id = _id()
            self.by_sender_id[sender_batch_id] = batch_id
            total = sum(float(item["amount"]["value"]) for item in items)
            self.batches[batch_id] = {
                "batch_header": {
                    "payout_batch_id": batch_id,
                    "batch_status": "PENDING",
                    "time_created": _now(),
                    "sender_batch_header": {
                        k: v for k, v in header.items() if k != "recipient_type"
                    },
                    "amount": {"currency": "USD", "value": f"{total:.2f}"},
                    "fees": {"currency": "USD", "value": "0.00"},
                },
                "items": [
                    {
                        "payout_item_id": _id(),
                        "activity_id": _id(17),
                        "transaction_status": "PENDING",
                        "payout_item_fee": {"currency": "USD", "value": "0.00"},
                        "payout_batch_id": batch_id,
                        "payout_item": {
                            "recipient_type": item.get("recipient_type")
                            or header.get("recipient_type"),
                            "amount": item["amount"],
                            "note": item.get("note", ""),
                            "receiver": item["receiver"],
                            "sender_item_id": item.get("sender_item_id", ""),
                        },
                        "links": [],
                    }
                    for item in items
                ],
                "links": [
                    {
                        "href": f"{self.base_url}/v1/payments/payouts/{batch_id}",
                        "rel": "self",
                        "method": "GET",
                        "encType": "application/json",
                    }
                ],
            }
            created = self.batches[batch_id]
        return 201, {
            "batch_header": {
                "payout_batch_id": batch_id,
                "batch_status": "PENDING",
                "sender_batch_header": created["batch_header"]["sender_batch_header"],
            },
            "links": created["links"],
        }


def _handler_for(fake: FakePayPal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.handle(method, self.path.split("?")[0], headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Paypal-Debug-Id", _id(13).lower())
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@contextmanager
def running_paypal() -> Iterator[FakePayPal]:
    """Start the fake on a free port of 127.0.0.1; stop it on exit."""
    fake = FakePayPal()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-paypal", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

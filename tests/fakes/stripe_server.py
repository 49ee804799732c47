"""A fake of the part of Stripe's API we use, as a real HTTP server on 127.0.0.1, speaking
Stripe's wire format so the real `stripe` SDK talks to it unchanged:

- `POST /v1/checkout/sessions`: form-encoded body with bracket notation
  (`line_items[0][price_data][unit_amount]=2500`), `Authorization: Bearer sk_…`; answers a
  Checkout Session object. `Idempotency-Key` is honoured as Stripe does: the same key with the
  same parameters replays the first response (`Idempotent-Replayed: true`), with different
  parameters it is a 400 `idempotency_error`.
- `GET /v1/checkout/sessions/<id>`: the session as it stands.
- `GET /v1/charges` and `GET /v1/refunds`: Stripe's list shape (`{"object": "list", "data":
  […], "has_more": …, "url": …}`), newest first, filtered by `created[gte|gt|lte|lt]` (and
  `payment_intent` for charges), paged by `limit` (1–100, default 10) and `starting_after`.
  Paying a session makes its charge; `add_charge()` and `refund()` play a payment or a
  refund made outside our app (the Dashboard, another integration).
- A wrong key is a 401 and an unknown route a 404, both in Stripe's error shape
  `{"error": {"type": …, "message": …}}`.

`complete_session()` plays the customer paying: it marks a session paid and returns the
`checkout.session.completed` event Stripe would deliver; `sign_payload()` signs a webhook body
exactly as Stripe does (`Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">`).
The form decoding and the signature are the Checkout stand-in's (`apps.billing.stripe_standin`,
which `make run` serves): one reading of Stripe's wire format for both.
"""

import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from apps.billing.stripe_standin.server import decode_form, sign_payload

__all__ = ["checkout_event", "running_stripe", "sign_payload"]

API_VERSION = "2025-01-27.acacia"
CHECKOUT_HOST = "https://checkout.stripe.com"


def _random_id(prefix: str, length: int = 24) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def checkout_event(
    session: dict[str, Any], *, event_id: str | None = None, event_type: str | None = None
) -> dict[str, Any]:
    """A v1 snapshot event carrying `session`, shaped as Stripe delivers it."""
    return {
        "id": event_id or _random_id("evt_test_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "data": {"object": session},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type or "checkout.session.completed",
    }


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, Any]


@dataclass
class FakeStripe:
    """State of the fake: the one valid secret key, sessions, idempotent replays, requests."""

    api_key: str
    base_url: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    _replays: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self, path: str = "/v1/checkout/sessions", method: str = "POST") -> list:
        return [r for r in self.requests if r.path == path and r.method == method]

    def complete_session(
        self, session_id: str, *, event_id: str | None = None, payment_status: str = "paid"
    ) -> dict[str, Any]:
        """The customer pays: the session completes, and here is the event Stripe sends."""
        with self._lock:
            session = self.sessions[session_id]
            session.update(
                status="complete",
                payment_status=payment_status,
                payment_intent=session["payment_intent"] or _random_id("pi_test_"),
            )
            snapshot = json.loads(json.dumps(session))
        if payment_status == "paid":
            self.add_charge(
                amount=session["amount_total"],
                payment_intent=session["payment_intent"],
                metadata=session["metadata"],
            )
        return checkout_event(snapshot, event_id=event_id)

    def add_charge(
        self,
        *,
        amount: int,
        payment_intent: str | None = None,
        created: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A successful card charge of `amount` cents, as Stripe records it."""
        charge = {
            "id": _random_id("ch_test_"),
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "captured": True,
            "created": int(time.time()) if created is None else created,
            "currency": "usd",
            "livemode": False,
            "metadata": metadata or {},
            "paid": True,
            "payment_intent": payment_intent or _random_id("pi_test_"),
            "refunded": False,
            "status": "succeeded",
        }
        with self._lock:
            self.charges[charge["id"]] = charge
        return charge

    def refund(
        self, charge_id: str, *, amount: int | None = None, created: int | None = None
    ) -> dict[str, Any]:
        """Refund (part of) a charge, as a Dashboard user would."""
        with self._lock:
            charge = self.charges[charge_id]
            amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
            if not 0 < amount <= charge["amount"] - charge["amount_refunded"]:
                raise ValueError(f"cannot refund {amount} of {charge_id}")
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            refund = {
                "id": _random_id("re_test_"),
                "object": "refund",
                "amount": amount,
                "charge": charge_id,
                "created": int(time.time()) if created is None else created,
                "currency": charge["currency"],
                "metadata": {},
                "payment_intent": charge["payment_intent"],
                "reason": "requested_by_customer",
                "status": "succeeded",
            }
            self.refunds[refund["id"]] = refund
        return refund

    # -- request handling (called from the server's threads) --------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: str, query: str = ""
    ) -> tuple[int, dict[str, Any], bool]:
        """(status, JSON body, whether it is an idempotent replay)."""
        status, payload = self._route(method, path, headers, body, query)
        replayed = bool(payload.pop("_replayed", False))
        return status, payload, replayed

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: str, query: str = ""
    ) -> tuple[int, dict[str, Any]]:
        form = decode_form(body) if method == "POST" else {}
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, form))
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:], self.api_key):
            shown = auth[7:][:8] + "*" * max(0, len(auth[7:]) - 12) + auth[7:][-4:]
            return 401, _error(
                "invalid_request_error", f"Invalid API Key provided: {shown}", code=None
            )
        if method == "POST" and path == "/v1/checkout/sessions":
            key = headers.get("idempotency-key")
            if not key:
                return self._create_session(form)
            fingerprint = json.dumps(form, sort_keys=True)
            with self._lock:
                replay = self._replays.get(key)
                if replay is None:
                    status, response = self._create_session(form)
                    if status == 200:  # Stripe stores nothing for a request that fails validation
                        self._replays[key] = (fingerprint, status, response)
                    return status, response
            if replay[0] != fingerprint:
                return 400, _error(
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    code=None,
                )
            return replay[1], {**replay[2], "_replayed": True}
        if method == "GET" and path in ("/v1/charges", "/v1/refunds"):
            objects = self.charges if path == "/v1/charges" else self.refunds
            return self._list(path, objects, decode_form(query))
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            session = self.sessions.get(path.rsplit("/", 1)[1])
            if session is None:
                return 404, _error(
                    "invalid_request_error",
                    f"No such checkout.session: '{path.rsplit('/', 1)[1]}'",
                    code="resource_missing",
                    param="session",
                )
            return 200, session
        return 404, _error(
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
            code=None,
        )

    def _list(
        self, path: str, objects: dict[str, dict[str, Any]], params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """One page of a list endpoint, as Stripe pages: newest first, `limit` at a time,
        `starting_after` the last id of the previous page."""
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            return 400, _error(
                "invalid_request_error", "Invalid integer: limit", code="parameter_invalid_integer"
            )
        if not 1 <= limit <= 100:
            return 400, _error(
                "invalid_request_error",
                "This value must be greater than or equal to 1 and less than or equal to 100.",
                code="parameter_invalid_integer",
                param="limit",
            )
        created = params.get("created")
        bounds = created if isinstance(created, dict) else {}
        tests = {
            "gte": lambda c, v: c >= v,
            "gt": lambda c, v: c > v,
            "lte": lambda c, v: c <= v,
            "lt": lambda c, v: c < v,
        }
        with self._lock:
            rows = sorted(objects.values(), key=lambda o: (o["created"], o["id"]), reverse=True)
        for op, value in bounds.items():
            if op not in tests:
                return 400, _error(
                    "invalid_request_error",
                    f"Received unknown parameter: created[{op}]",
                    code="parameter_unknown",
                )
            rows = [o for o in rows if tests[op](o["created"], int(value))]
        if isinstance(created, str):
            rows = [o for o in rows if o["created"] == int(created)]
        if "payment_intent" in params:
            rows = [o for o in rows if o.get("payment_intent") == params["payment_intent"]]
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in rows]
            if after not in ids:
                return 400, _error(
                    "invalid_request_error",
                    f"No such object: '{after}'",
                    code="resource_missing",
                    param="starting_after",
                )
            rows = rows[ids.index(after) + 1 :]
        page = json.loads(json.dumps(rows[:limit]))
        return 200, {"object": "list", "data": page, "has_more": len(rows) > limit, "url": path}

    def _create_session(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        mode = form.get("mode")
        if mode not in {"payment", "setup", "subscription"}:
            return 400, _missing("mode") if mode is None else _invalid("mode", mode)
        items = form.get("line_items")
        if mode == "payment" and not isinstance(items, list):
            return 400, _error(
                "invalid_request_error",
                "You must provide at least one of `line_items` when `mode` is `payment`.",
                code="parameter_missing",
                param="line_items",
            )
        total = 0
        currency = None
        for index, item in enumerate(items or []):
            price = item.get("price_data") or {}
            try:
                unit = int(price["unit_amount"])
                quantity = int(item.get("quantity", "1"))
            except (KeyError, ValueError):
                return 400, _missing(f"line_items[{index}][price_data][unit_amount]")
            total += unit * quantity
            currency = price.get("currency")
        session_id = _random_id("cs_test_", 58)
        now = int(time.time())
        session = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": form.get("cancel_url"),
            "client_reference_id": form.get("client_reference_id"),
            "created": now,
            "currency": currency,
            "customer": None,
            "customer_email": form.get("customer_email"),
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "metadata": form.get("metadata") or {},
            "mode": mode,
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": form.get("success_url"),
            "url": f"{CHECKOUT_HOST}/c/pay/{session_id}#{_random_id('', 32)}",
        }
        self.sessions[session_id] = session
        return 200, session


def _error(kind: str, message: str, *, code: str | None, param: str | None = None) -> dict:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code:
        body["code"] = code
    if param:
        body["param"] = param
    body["request_log_url"] = "https://dashboard.stripe.com/test/logs/" + _random_id("req_", 14)
    return {"error": body}


def _missing(param: str) -> dict:
    return _error(
        "invalid_request_error",
        f"Missing required param: {param}.",
        code="parameter_missing",
        param=param,
    )


def _invalid(param: str, value: str) -> dict:
    return _error(
        "invalid_request_error",
        f"Invalid {param}: must be one of payment, setup, or subscription (got {value!r})",
        code="parameter_invalid_empty",
        param=param,
    )


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects
        disable_nagle_algorithm = True

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            url = urlsplit(self.path)
            status, payload, replayed = fake.handle(method, url.path, headers, body, url.query)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", _random_id("req_", 14))
            self.send_header("Stripe-Version", headers.get("stripe-version", API_VERSION))
            if "idempotency-key" in headers:
                self.send_header("Idempotency-Key", headers["idempotency-key"])
            if replayed:
                self.send_header("Idempotent-Replayed", "true")
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
def running_stripe(api_key: str = "sk_test_fake_0123456789abcdef") -> Iterator[FakeStripe]:
    """Start the fake on a free port of 127.0.0.1; stop it on exit."""
    fake = FakeStripe(api_key=api_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(fake))
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-stripe", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

# Over 450 lines: one stand-in for one upstream API (sessions, charges, refunds) on one state.
"""The stand-in's state, its HTTP server and the webhook sender (see the package docstring)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from apps.billing.stripe_standin import page

logger = logging.getLogger(__name__)

API_VERSION = "2025-01-27.acacia"
# Stripe's test cards: https://docs.stripe.com/testing#cards
CARD_SUCCEEDS = "4242424242424242"
CARD_DECLINED = "4000000000000002"
# Stripe retries failed deliveries for days; the demo retries a few times, soon.
WEBHOOK_RETRY_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)


def _random_id(prefix: str, length: int = 24) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def sign_payload(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `payload` (scheme v1; text is signed
    as its UTF-8 bytes)."""
    ts = int(time.time()) if timestamp is None else timestamp
    signed = f"{ts}.".encode() + (payload.encode() if isinstance(payload, str) else payload)
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested data: `a[b][0][c]=x` → {"a": {"b": [{"c": "x"}]}}.
    Values stay strings, as Stripe receives them."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head, _, rest = key.partition("[")
        path = [head] + (rest[:-1].split("][") if rest else [])
        node = root
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def stripe_error(kind: str, message: str, code: str | None = None, **extra: str) -> dict:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code:
        body["code"] = code
    body.update(extra)
    return {"error": body}


@dataclass
class CardResult:
    paid: bool
    error: dict[str, Any] | None = None  # Stripe's card_error body when not paid


def charge_card(number: str) -> CardResult:
    """What Stripe's test mode does with a card number."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if digits == CARD_SUCCEEDS:
        return CardResult(paid=True)
    if digits == CARD_DECLINED:
        return CardResult(
            paid=False,
            error=stripe_error(
                "card_error",
                "Your card was declined.",
                "card_declined",
                decline_code="generic_decline",
            ),
        )
    return CardResult(
        paid=False,
        error=stripe_error(
            "card_error",
            "Your card number is incorrect. This is a test page: pay with 4242 4242 4242 4242.",
            "incorrect_number",
        ),
    )


@dataclass
class StripeStandin:
    """The stand-in's state: one secret key, where to deliver webhooks and with which secret."""

    api_key: str
    webhook_secret: str
    webhook_url: str
    public_url: str = ""
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    item_names: dict[str, list[str]] = field(default_factory=dict)  # the page shows them
    deliveries: list[tuple[str, int | None]] = field(default_factory=list)  # (event id, status)
    _replays: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- the API ---------------------------------------------------------------------------

    def api(self, method: str, path: str, headers: dict[str, str], body: str, query: str):
        """(status, JSON body, replayed) for a request under /v1."""
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not hmac.compare_digest(auth[7:], self.api_key):
            return 401, stripe_error("invalid_request_error", "Invalid API Key provided."), False
        if method == "POST" and path == "/v1/checkout/sessions":
            form = decode_form(body)
            key = headers.get("idempotency-key")
            fingerprint = json.dumps(form, sort_keys=True)
            with self._lock:
                if key and key in self._replays:
                    first_fingerprint, response = self._replays[key]
                    if first_fingerprint != fingerprint:
                        return (
                            400,
                            stripe_error(
                                "idempotency_error",
                                "Keys for idempotent requests can only be used with the same "
                                f"parameters they were first used with (key '{key}').",
                            ),
                            False,
                        )
                    return 200, response, True
                status, response = self._create_session(form)
                if key and status == 200:
                    self._replays[key] = (fingerprint, response)
            return status, response, False
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            session_id = path.rsplit("/", 1)[1]
            with self._lock:
                session = self.sessions.get(session_id)
                if session is not None:
                    return 200, json.loads(json.dumps(session)), False
            return (
                404,
                stripe_error(
                    "invalid_request_error",
                    f"No such checkout.session: '{session_id}'",
                    "resource_missing",
                    param="session",
                ),
                False,
            )
        if method == "GET" and path in ("/v1/charges", "/v1/refunds"):
            objects = self.charges if path == "/v1/charges" else self.refunds
            status, listed = self._list(path, objects, decode_form(query))
            return status, listed, False
        return (
            404,
            stripe_error("invalid_request_error", f"Unrecognized request URL ({method}: {path})."),
            False,
        )

    def _create_session(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if form.get("mode") != "payment":
            return 400, stripe_error(
                "invalid_request_error",
                "The stand-in supports mode=payment only.",
                "parameter_invalid_empty",
                param="mode",
            )
        items = form.get("line_items")
        if not isinstance(items, list) or not items:
            return 400, stripe_error(
                "invalid_request_error",
                "You must provide at least one of `line_items` when `mode` is `payment`.",
                "parameter_missing",
                param="line_items",
            )
        total = 0
        currency = None
        for index, item in enumerate(items):
            price = item.get("price_data") or {}
            try:
                total += int(price["unit_amount"]) * int(item.get("quantity", "1"))
            except (KeyError, ValueError, TypeError):
                return 400, stripe_error(
                    "invalid_request_error",
                    f"Missing required param: line_items[{index}][price_data][unit_amount].",
                    "parameter_missing",
                )
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
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": form.get("success_url"),
            "url": f"{self.public_url}/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        self.item_names[session_id] = [
            str(((i.get("price_data") or {}).get("product_data") or {}).get("name", ""))
            for i in items
        ]
        return 200, session

    def _list(
        self, path: str, objects: dict[str, dict[str, Any]], params: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """One page, newest first, `limit` at a time after `starting_after`, within
        `created[gte|gt|lte|lt]` — as Stripe pages."""
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return 400, stripe_error(
                "invalid_request_error", "limit must be 1 to 100.", "parameter_invalid_integer"
            )
        with self._lock:
            rows = sorted(objects.values(), key=lambda o: (o["created"], o["id"]), reverse=True)
        created = params.get("created")
        tests = {
            "gte": lambda c, v: c >= v,
            "gt": lambda c, v: c > v,
            "lte": lambda c, v: c <= v,
            "lt": lambda c, v: c < v,
        }
        for op, value in (created if isinstance(created, dict) else {}).items():
            if op not in tests:
                return 400, stripe_error(
                    "invalid_request_error", f"Received unknown parameter: created[{op}]"
                )
            rows = [o for o in rows if tests[op](o["created"], int(value))]
        after = params.get("starting_after")
        if after:
            ids = [o["id"] for o in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        page_rows = json.loads(json.dumps(rows[:limit]))
        return 200, {
            "object": "list",
            "data": page_rows,
            "has_more": len(rows) > limit,
            "url": path,
        }

    # -- paying ----------------------------------------------------------------------------

    def pay(self, session_id: str, card_number: str) -> tuple[CardResult, dict[str, Any] | None]:
        """The customer submits a card on the checkout page. A paid session completes, gets
        its charge and its `checkout.session.completed` event delivered (then, once more
        delivered or not, retried in the background). Paying a complete session again changes
        nothing. (result, the session) — the session is None when it does not exist."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                return CardResult(paid=False), None
            if session["status"] == "complete":
                return CardResult(paid=True), json.loads(json.dumps(session))
            result = charge_card(card_number)
            if not result.paid:
                return result, json.loads(json.dumps(session))
            intent = _random_id("pi_test_")
            session.update(status="complete", payment_status="paid", payment_intent=intent)
            charge = {
                "id": _random_id("ch_test_"),
                "object": "charge",
                "amount": session["amount_total"],
                "amount_captured": session["amount_total"],
                "amount_refunded": 0,
                "captured": True,
                "created": int(time.time()),
                "currency": session["currency"],
                "livemode": False,
                "metadata": session["metadata"],
                "paid": True,
                "payment_intent": intent,
                "refunded": False,
                "status": "succeeded",
            }
            self.charges[charge["id"]] = charge
            snapshot = json.loads(json.dumps(session))
        event = {
            "id": _random_id("evt_test_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": snapshot},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "checkout.session.completed",
        }
        if not self.deliver(event):
            threading.Thread(
                target=self._retry, args=(event,), name="standin-webhook-retry", daemon=True
            ).start()
        return result, snapshot

    def deliver(self, event: dict[str, Any]) -> bool:
        """POST the event to the webhook URL, signed; True when it answered 2xx."""
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign_payload(body, self.webhook_secret),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None = None
        try:
            status = httpx.post(
                self.webhook_url, content=body, headers=headers, timeout=10
            ).status_code
        except httpx.HTTPError as exc:
            logger.warning("stripe stand-in: webhook %s not delivered: %s", event["id"], exc)
        with self._lock:
            self.deliveries.append((event["id"], status))
        if status is not None and not 200 <= status < 300:
            logger.warning("stripe stand-in: webhook %s answered %s", event["id"], status)
        return status is not None and 200 <= status < 300

    def _retry(self, event: dict[str, Any]) -> None:
        for delay in WEBHOOK_RETRY_DELAYS_S:
            time.sleep(delay)  # a retry schedule, not synchronisation
            if self.deliver(event):
                return
        logger.error("stripe stand-in: gave up delivering %s", event["id"])


def _handler_for(standin: StripeStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects

        def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any, **headers: str) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json", **headers)

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            url = urlsplit(self.path)
            if url.path.startswith("/v1/"):
                status, payload, replayed = standin.api(method, url.path, headers, body, url.query)
                extra = {"Request_Id": _random_id("req_", 14), "Stripe_Version": API_VERSION}
                if replayed:
                    extra["Idempotent_Replayed"] = "true"
                self._json(status, payload, **extra)
            elif url.path.startswith("/c/pay/"):
                self._checkout(method, url.path.rsplit("/", 1)[1], headers, body)
            else:
                self._json(404, stripe_error("invalid_request_error", "Not found."))

        def _checkout(self, method: str, session_id: str, headers: dict[str, str], body: str):
            wants_json = "application/json" in headers.get("accept", "")
            with standin._lock:
                known = session_id in standin.sessions
                current = json.loads(json.dumps(standin.sessions.get(session_id)))
            if not known:
                error = stripe_error("invalid_request_error", "This checkout page does not exist.")
                if wants_json:
                    self._json(404, error)
                else:
                    self._send(404, page.not_found().encode(), "text/html; charset=utf-8")
                return
            if method == "GET":
                html = page.checkout(current, standin.item_names.get(session_id, []), error=None)
                self._send(200, html.encode(), "text/html; charset=utf-8")
                return
            form = dict(parse_qsl(body, keep_blank_values=True))
            result, session = standin.pay(session_id, form.get("card_number", ""))
            assert session is not None  # noqa: S101 - known above; sessions are never removed
            if not result.paid:
                if wants_json:
                    self._json(402, result.error)
                else:
                    html = page.checkout(
                        session,
                        standin.item_names.get(session_id, []),
                        error=(result.error or {})["error"]["message"],
                    )
                    # The page itself loads fine and says why (as Stripe's page does).
                    self._send(200, html.encode(), "text/html; charset=utf-8")
                return
            if wants_json:
                self._json(200, session)
                return
            target = (session.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session_id)
            if target:
                self._send(303, b"", "text/plain", Location=target)
            else:
                self._send(200, page.checkout(session, [], error=None).encode(), "text/html")

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logger.debug("stripe stand-in: " + format, *args)

    return Handler


class RunningStandin:
    """The stand-in served on `host:port` (0: a free port) in a background thread."""

    def __init__(
        self,
        *,
        api_key: str,
        webhook_secret: str,
        webhook_url: str,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
    ) -> None:
        self.standin = StripeStandin(
            api_key=api_key, webhook_secret=webhook_secret, webhook_url=webhook_url
        )
        self.server = ThreadingHTTPServer((host, port), _handler_for(self.standin))
        self.server.daemon_threads = True
        self.url = public_url or f"http://{host}:{self.server.server_address[1]}"
        self.standin.public_url = self.url.rstrip("/")
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="stripe-standin", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningStandin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

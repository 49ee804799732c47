"""PayPal Payouts (REST v1): an OAuth2 client-credentials token from `POST /v1/oauth2/token`,
one batch per payout with `POST /v1/payments/payouts` (our payout id is the batch's
`sender_batch_id`, so PayPal refuses a second batch for it), and the batch's state from
`GET /v1/payments/payouts/{payout_batch_id}`. The base URL is PAYPAL_API_BASE (the real API,
or the local fake in tests)."""

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from apps.core.money import micros_to_usd
from apps.providers.gateways.base import (
    GatewayError,
    PayoutGateway,
    Sent,
    Settlement,
    SettlementState,
)
from apps.providers.models import Payout

logger = logging.getLogger(__name__)

# Item states (PayPal's `transaction_status`) that end a payout.
PAID_ITEM_STATES = frozenset({"SUCCESS"})
FAILED_ITEM_STATES = frozenset({"FAILED", "RETURNED", "BLOCKED", "REFUNDED", "REVERSED", "DENIED"})
FAILED_BATCH_STATES = frozenset({"DENIED", "CANCELED"})
TOKEN_MARGIN_S = 60  # renew a token this long before PayPal says it expires


@dataclass
class _Token:
    value: str
    expires_at: float


class PayPalPayoutsClient:
    """A small client of PayPal's Payouts API. Thread-safe; tokens are cached per client."""

    def __init__(
        self, *, base_url: str, client_id: str, client_secret: str, timeout: float = 20.0
    ) -> None:
        if not client_id or not client_secret:
            raise GatewayError(
                "PayPal payouts are not configured: set PAYPAL_CLIENT_ID and PAYPAL_CLIENT_SECRET.",
                retryable=True,
            )
        self.base_url = base_url.rstrip("/")
        self._auth = (client_id, client_secret)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: _Token | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def _fetch_token(self) -> _Token:
        try:
            response = self._http.post(
                "/v1/oauth2/token",
                auth=self._auth,
                data={"grant_type": "client_credentials"},
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise GatewayError(f"PayPal token request failed: {exc}", retryable=True) from exc
        if response.status_code != 200:
            raise GatewayError(
                f"PayPal refused our credentials ({response.status_code}): {_error_text(response)}",
                retryable=True,
            )
        body = response.json()
        return _Token(
            value=body["access_token"],
            expires_at=time.monotonic() + int(body.get("expires_in", 0)) - TOKEN_MARGIN_S,
        )

    def access_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or self._token.expires_at <= time.monotonic():
                self._token = self._fetch_token()
            return self._token.value

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call with the bearer token, renewing it once if PayPal says it expired."""
        for attempt in range(2):
            token = self.access_token(renew=attempt > 0)
            try:
                response = self._http.request(
                    method,
                    path,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                    },
                    **kwargs,
                )
            except httpx.HTTPError as exc:
                raise GatewayError(f"PayPal {method} {path} failed: {exc}", retryable=True) from exc
            if response.status_code != 401:
                return response
        raise GatewayError("PayPal rejected a fresh access token (401).", retryable=True)

    def create_batch(
        self, *, sender_batch_id: str, receiver_email: str, value: str, note: str, item_id: str
    ) -> dict[str, Any]:
        """Create a one-item batch paying `value` USD to a PayPal email; returns PayPal's
        batch header. A batch created before for the same `sender_batch_id` is found again
        (PayPal answers the duplicate with a link to it) instead of being sent twice."""
        body = {
            "sender_batch_header": {
                "sender_batch_id": sender_batch_id,
                "recipient_type": "EMAIL",
                "email_subject": "You have a payout from GPU Cloud",
                "email_message": note,
            },
            "items": [
                {
                    "recipient_type": "EMAIL",
                    "amount": {"value": value, "currency": "USD"},
                    "receiver": receiver_email,
                    "note": note,
                    "sender_item_id": item_id,
                }
            ],
        }
        response = self._request("POST", "/v1/payments/payouts", json=body)
        if response.status_code in (200, 201):
            return response.json()["batch_header"]
        error = _error_body(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise GatewayError(f"PayPal is unavailable: {_error_text(response)}", retryable=True)
        if _is_duplicate(error):
            batch_id = _linked_batch_id(error)
            if batch_id:
                return self.get_batch(batch_id)["batch_header"]
            raise GatewayError(
                f"PayPal already has batch {sender_batch_id} but did not say which; look it up "
                "in the PayPal dashboard and settle this payout by hand.",
                retryable=False,
            )
        raise GatewayError(f"PayPal refused the payout: {_error_text(response)}", retryable=False)

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        response = self._request("GET", f"/v1/payments/payouts/{batch_id}")
        if response.status_code != 200:
            raise GatewayError(
                f"PayPal batch {batch_id}: {_error_text(response)}",
                retryable=response.status_code >= 500 or response.status_code in (404, 429),
            )
        return response.json()


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(response: httpx.Response) -> str:
    body = _error_body(response)
    parts = [str(body.get("name") or response.status_code), str(body.get("message") or "")]
    for detail in body.get("details") or []:
        if isinstance(detail, dict):
            parts.append(f"{detail.get('field', '')}: {detail.get('issue', '')}")
    return " ".join(p for p in parts if p).strip()


def _is_duplicate(error: dict[str, Any]) -> bool:
    return any(
        isinstance(d, dict) and str(d.get("field", "")).upper() == "SENDER_BATCH_ID"
        for d in error.get("details") or []
    )


def _linked_batch_id(error: dict[str, Any]) -> str:
    for link in error.get("links") or []:
        href = str(link.get("href", "")) if isinstance(link, dict) else ""
        if "/v1/payments/payouts/" in href:
            return href.rstrip("/").rsplit("/", 1)[-1]
    return ""


_clients: dict[tuple[str, str, str], PayPalPayoutsClient] = {}
_clients_lock = threading.Lock()


def paypal_client() -> PayPalPayoutsClient:
    """The shared client for the configured account (one token cache per process)."""
    key = (settings.PAYPAL_API_BASE, settings.PAYPAL_CLIENT_ID, settings.PAYPAL_CLIENT_SECRET)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = PayPalPayoutsClient(
                base_url=key[0],
                client_id=key[1],
                client_secret=key[2],
                timeout=float(settings.PAYPAL_TIMEOUT_S),
            )
            _clients[key] = client
        return client


class PayPalGateway(PayoutGateway):
    name = "paypal"

    def __init__(self, client: PayPalPayoutsClient | None = None) -> None:
        self._client = client

    def unconfigured(self) -> str:
        if self._client is None and not (
            settings.PAYPAL_CLIENT_ID and settings.PAYPAL_CLIENT_SECRET
        ):
            return (
                "waiting: PayPal payouts are not configured "
                "(PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET)"
            )
        return ""

    @property
    def client(self) -> PayPalPayoutsClient:
        return self._client or paypal_client()

    def send(self, payout: Payout) -> Sent:
        header = self.client.create_batch(
            sender_batch_id=str(payout.pk),
            receiver_email=payout.details["email"],
            value=micros_to_usd(payout.amount),
            note=f"GPU Cloud provider payout {payout.pk}",
            item_id=str(payout.pk),
        )
        if header.get("batch_status") in FAILED_BATCH_STATES:
            raise GatewayError(
                f"PayPal {header.get('batch_status')} the payout batch.", retryable=False
            )
        return Sent(reference=str(header["payout_batch_id"]))

    def settlement(self, payout: Payout) -> Settlement:
        batch = self.client.get_batch(payout.gateway_ref)
        header = batch.get("batch_header") or {}
        status = str(header.get("batch_status", ""))
        if status in FAILED_BATCH_STATES:
            return Settlement(SettlementState.FAILED, reason=f"PayPal batch {status}")
        items = batch.get("items") or []
        if not items:
            return Settlement(SettlementState.PENDING)
        item = items[0]
        item_status = str(item.get("transaction_status", ""))
        if item_status in PAID_ITEM_STATES:
            return Settlement(SettlementState.PAID, reference=str(item.get("transaction_id") or ""))
        if item_status in FAILED_ITEM_STATES:
            errors = item.get("errors") or {}
            why = errors.get("message") or errors.get("name") or item_status
            return Settlement(SettlementState.FAILED, reason=f"PayPal item {item_status}: {why}")
        return Settlement(SettlementState.PENDING)

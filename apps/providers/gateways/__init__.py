"""How approved payouts leave the platform: one `PayoutGateway` per payout method."""

from apps.providers.gateways.base import (
    GatewayError,
    PayoutGateway,
    Sent,
    Settlement,
    SettlementState,
)
from apps.providers.gateways.crypto import CryptoGateway
from apps.providers.gateways.paypal import PayPalGateway
from apps.providers.models import PayoutMethod


def gateway_for(method: str) -> PayoutGateway:
    if method == PayoutMethod.PAYPAL:
        return PayPalGateway()
    if method == PayoutMethod.CRYPTO:
        return CryptoGateway()
    raise ValueError(f"no gateway for payout method {method!r}")


__all__ = [
    "CryptoGateway",
    "GatewayError",
    "PayPalGateway",
    "PayoutGateway",
    "Sent",
    "Settlement",
    "SettlementState",
    "gateway_for",
]

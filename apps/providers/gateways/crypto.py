"""Stablecoin payouts. The server holds no private keys: sending records the transfer an
operator signs in their own wallet (chain, token, address, amount), and the operator enters
the transaction hash in the admin, which marks the payout paid (`payout_mark_paid`)."""

from decimal import Decimal

from apps.core.money import MICROS_PER_USD
from apps.providers.gateways.base import PayoutGateway, Sent, Settlement, SettlementState
from apps.providers.models import Payout


class CryptoGateway(PayoutGateway):
    name = "crypto"

    def send(self, payout: Payout) -> Sent:
        details = payout.details
        # USDC and USDT are pegged 1:1 to USD; the token amount is the dollar amount.
        amount = Decimal(payout.amount) / MICROS_PER_USD
        return Sent(
            reference=f"crypto:{payout.pk}",
            transfer={
                "chain": details["chain"],
                "token": details["currency"],
                "to_address": details["address"],
                "amount": f"{amount:.6f}",
                "amount_micros": payout.amount,
                "memo": f"payout {payout.pk}",
            },
        )

    def settlement(self, payout: Payout) -> Settlement:
        # Only the operator knows when the signed transfer went out (they enter its hash).
        return Settlement(SettlementState.PENDING)

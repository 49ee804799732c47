"""The interface every payout gateway implements, and its one error type."""

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from apps.providers.models import Payout


class GatewayError(Exception):
    """The gateway did not take the payout. `retryable`: a timeout, 5xx or auth problem
    (send again later: the gateway deduplicates on the payout's id); otherwise the payout
    itself was refused (bad receiver, say) and fails."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Sent:
    """What the gateway recorded for a payout: its reference and, for transfers an operator
    signs, the transfer to make."""

    reference: str = ""
    transfer: dict[str, Any] = field(default_factory=dict)


class SettlementState(enum.Enum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


@dataclass(frozen=True)
class Settlement:
    state: SettlementState
    reason: str = ""
    reference: str = ""  # the gateway's transaction id, once paid


class PayoutGateway(ABC):
    name: str

    def unconfigured(self) -> str:
        """Why this gateway cannot send now (a missing setting), or "" when it can."""
        return ""

    @abstractmethod
    def send(self, payout: Payout) -> Sent:
        """Hand the payout to the gateway. Safe to call again for the same payout."""

    @abstractmethod
    def settlement(self, payout: Payout) -> Settlement:
        """Where a sent payout stands."""

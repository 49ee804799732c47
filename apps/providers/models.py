"""Community GPU providers (DESIGN.md §3, issue 6): who they are, their tier and the platform
fee it sets (with its history, so a change never reaches back), their `pk_…` keys, the price
bands operators allow per GPU model, and payouts of what they earned.

A provider's node carries the provider's id in `Node.provider_id` (a plain UUID column, not a
foreign key: the nodes app does not depend on this one), and the provider's money is the
ledger's `provider_payable(provider.id)` account."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import StatusEvent


class Tier(models.TextChoices):
    BASIC = "BASIC", "Basic"
    VERIFIED = "VERIFIED", "Verified"
    PRO = "PRO", "Pro"


def tier_fee_percent(tier: str) -> int:
    """The platform's cut of a provider's earnings at `tier` (PROVIDER_TIER_FEE_PERCENT)."""
    return int(settings.PROVIDER_TIER_FEE_PERCENT[tier])


class Verification(models.TextChoices):
    UNVERIFIED = "UNVERIFIED", "Unverified"
    PENDING = "PENDING", "Pending review"
    VERIFIED = "VERIFIED", "Verified"
    REJECTED = "REJECTED", "Rejected"


class PayoutMethod(models.TextChoices):
    CRYPTO = "CRYPTO", "Crypto (stablecoin)"
    PAYPAL = "PAYPAL", "PayPal"


class ProviderQuerySet(models.QuerySet):
    def for_user(self, user: object) -> "ProviderQuerySet":
        return self.filter(owner=user)


class Provider(models.Model):
    """A user who rents out GPUs. One per user. `tier` and `verification` are set by operators
    (through `provider_set_tier`, which records the fee history); the payout method and its
    details are the provider's own, validated by apps.providers.payout_details."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="provider"
    )
    display_name = models.CharField(max_length=100)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.BASIC)
    verification = models.CharField(
        max_length=16, choices=Verification.choices, default=Verification.UNVERIFIED
    )
    payout_method = models.CharField(max_length=16, choices=PayoutMethod.choices, blank=True)
    # CRYPTO: {"currency": "USDC", "chain": "polygon", "address": "0x…"}; PAYPAL: {"email": …}
    payout_details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProviderQuerySet.as_manager()

    class Meta:
        ordering = ("display_name", "created_at")

    def __str__(self) -> str:
        return f"{self.display_name} ({self.get_tier_display()})"


class ProviderFee(models.Model):
    """The platform fee of a provider from `effective_from` on. Billing charges each interval
    at the fee in force when the interval started, so a tier change applies to usage after it
    and never to usage before it. Rows are only ever added."""

    id = models.BigAutoField(primary_key=True)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="fees")
    fee_percent = models.PositiveSmallIntegerField()
    tier = models.CharField(max_length=16, choices=Tier.choices)
    effective_from = models.DateTimeField()
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("provider", "effective_from")
        constraints = [
            models.CheckConstraint(condition=Q(fee_percent__lte=100), name="provider_fee_max_100"),
        ]
        indexes = [models.Index(fields=["provider", "effective_from"])]

    def __str__(self) -> str:
        return f"{self.fee_percent}% from {self.effective_from:%Y-%m-%d %H:%M:%S}"


class ProviderKey(models.Model):
    """A `pk_…` key that registers nodes under its provider. Shown once, stored as SHA-256;
    a provider may hold several and revoke each (a revoked key registers nothing more; nodes
    it registered keep their own node tokens)."""

    id = models.BigAutoField(primary_key=True)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class GpuPriceBand(models.Model):
    """The lowest and highest price per GPU-hour (micro-dollars) a provider may ask for a GPU
    model. Models without a band use PROVIDER_DEFAULT_PRICE_BAND around the platform's
    default price."""

    gpu_model = models.CharField(max_length=64, unique=True)
    floor = models.BigIntegerField(help_text="Micro-dollars per GPU-hour.")
    ceiling = models.BigIntegerField(help_text="Micro-dollars per GPU-hour.")

    class Meta:
        ordering = ("gpu_model",)
        constraints = [
            models.CheckConstraint(
                condition=Q(floor__gt=0) & Q(ceiling__gte=models.F("floor")),
                name="price_band_floor_below_ceiling",
            )
        ]

    def __str__(self) -> str:
        return f"{self.gpu_model}: {self.floor}–{self.ceiling} µ$/GPU-h"


class PayoutStatus(models.TextChoices):
    REQUESTED = "REQUESTED", "Requested (awaiting approval)"
    APPROVED = "APPROVED", "Approved"
    PROCESSING = "PROCESSING", "Processing"
    SENT = "SENT", "Sent (awaiting settlement)"
    PAID = "PAID", "Paid"
    FAILED = "FAILED", "Failed (returned to balance)"
    REJECTED = "REJECTED", "Rejected (returned to balance)"


# Money of these payouts has left the provider's available balance and not come back.
PENDING_STATUSES = (
    PayoutStatus.REQUESTED,
    PayoutStatus.APPROVED,
    PayoutStatus.PROCESSING,
    PayoutStatus.SENT,
)


class PayoutQuerySet(models.QuerySet):
    def for_provider(self, provider: Provider) -> "PayoutQuerySet":
        return self.filter(provider=provider)


class Payout(models.Model):
    """A provider's request to be paid `amount` micro-dollars. Requesting moves the amount from
    the provider's payable to payouts clearing (so it is no longer available); paying moves it
    from clearing to payouts sent; a failure or rejection moves it back to the payable. Status
    changes go through apps.providers.services.payouts only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="payouts")
    amount = models.BigIntegerField(help_text="Micro-dollars.")
    method = models.CharField(max_length=16, choices=PayoutMethod.choices)
    details = models.JSONField(help_text="Where the money goes, as validated at request time.")
    status = models.CharField(
        max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.REQUESTED
    )
    status_reason = models.CharField(max_length=500, blank=True)
    idempotency_key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)

    gateway = models.CharField(max_length=16, blank=True)
    gateway_ref = models.CharField(max_length=128, blank=True, help_text="PayPal batch id.")
    # For an operator to sign (crypto): chain, token, address, amount; no keys on the server.
    transfer = models.JSONField(default=dict, blank=True)
    tx_hash = models.CharField(max_length=128, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = PayoutQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "idempotency_key"], name="payout_unique_key_per_provider"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_amount_positive"),
        ]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"payout {self.pk} {self.amount}µ$ ({self.status})"


class PayoutApproval(Payout):
    """The operators' approval queue (admin): payouts waiting for an operator."""

    class Meta:
        proxy = True
        verbose_name = "payout awaiting approval"
        verbose_name_plural = "payout approval queue"


class PayoutEvent(StatusEvent):
    """A status change of a payout: when, from, to, why and who (operator or none)."""

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=PayoutStatus.choices)
    to_status = models.CharField(max_length=16, choices=PayoutStatus.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

"""Provider onboarding, profile, tier (with its fee history) and node pricing."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.core.gpu_models import CPU_MODEL
from apps.nodes.locks import lock_node
from apps.nodes.models import Node
from apps.providers.locks import lock_provider
from apps.providers.models import Provider, ProviderFee, Tier, Verification, tier_fee_percent
from apps.providers.pricing import price_bands
from apps.providers.services.keys import IssuedProviderKey, provider_key_create


class AlreadyProviderError(Exception):
    """The user already has a provider profile."""


class PriceOutOfBandError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class RegisteredProvider:
    provider: Provider
    key: IssuedProviderKey


@transaction.atomic
def provider_register(
    *,
    owner: User,
    display_name: str,
    payout_method: str = "",
    payout_details: dict[str, Any] | None = None,
) -> RegisteredProvider:
    """Make `owner` a provider at the Basic tier, with the tier's fee in force from now and a
    first `pk_…` key for the installer. Details are validated by the caller."""
    if Provider.objects.filter(owner=owner).exists():
        raise AlreadyProviderError(str(owner))
    try:
        with transaction.atomic():
            provider = Provider.objects.create(
                owner=owner,
                display_name=display_name,
                payout_method=payout_method,
                payout_details=payout_details or {},
            )
    except IntegrityError as exc:  # a concurrent registration of the same user won
        raise AlreadyProviderError(str(owner)) from exc
    ProviderFee.objects.create(
        provider=provider,
        tier=provider.tier,
        fee_percent=tier_fee_percent(provider.tier),
        effective_from=provider.created_at,
    )
    return RegisteredProvider(
        provider=provider, key=provider_key_create(provider=provider, name="default")
    )


def provider_update(*, provider: Provider, fields: dict[str, Any]) -> Provider:
    """Change the provider's own settings: display name, payout method and details (validated
    by the caller). Tier and verification are operators' (provider_set_tier)."""
    allowed = {"display_name", "payout_method", "payout_details"}
    changes = {k: v for k, v in fields.items() if k in allowed}
    for name, value in changes.items():
        setattr(provider, name, value)
    if changes:
        provider.save(update_fields=list(changes))
    return provider


@transaction.atomic
def provider_set_tier(
    *,
    provider: Provider,
    tier: str,
    verification: str | None = None,
    operator: User | None = None,
    effective_from: datetime | None = None,
) -> Provider:
    """Set the provider's tier (and verification) as an operator. A tier change records the
    new fee from `effective_from` (now): billing applies it to usage that starts from then on,
    never to usage before."""
    if tier not in Tier.values:
        raise ValueError(f"unknown tier {tier!r}")
    if verification is not None and verification not in Verification.values:
        raise ValueError(f"unknown verification state {verification!r}")
    locked = lock_provider(provider.pk)
    fields = []
    if verification is not None and locked.verification != verification:
        locked.verification = verification
        fields.append("verification")
    if locked.tier != tier:
        locked.tier = tier
        fields.append("tier")
        ProviderFee.objects.create(
            provider=locked,
            tier=tier,
            fee_percent=tier_fee_percent(tier),
            effective_from=effective_from or timezone.now(),
            set_by=operator,
        )
    if fields:
        locked.save(update_fields=fields)
    provider.tier, provider.verification = locked.tier, locked.verification
    return locked


@transaction.atomic
def node_pricing_set(*, node: Node, price_per_gpu_hour: int) -> Node:
    """Set the provider's asking price per GPU-hour on one of their nodes, within the band of
    every GPU model on it. Pods placed from now on are charged it; running pods keep the
    price they were placed at (the scheduler copies it onto the pod)."""
    locked = lock_node(node.pk)
    models = set(locked.gpus.values_list("model", flat=True)) or {CPU_MODEL}
    for model, band in sorted(price_bands(models).items()):
        if not band.floor <= price_per_gpu_hour <= band.ceiling:
            raise PriceOutOfBandError(
                f"{model}: the price must be between {band.floor} and {band.ceiling} "
                "micro-dollars per GPU-hour."
            )
    Node.objects.filter(pk=locked.pk).update(price_per_gpu_hour=price_per_gpu_hour)
    locked.price_per_gpu_hour = price_per_gpu_hour
    return locked

"""Row locks of the providers app, in one order: a payout row before ledger accounts (which
apps.billing.locks takes in pk order)."""

import uuid

from apps.providers.models import Payout, Provider


def lock_payout(payout_id: uuid.UUID | str) -> Payout:
    # Serialises a payout's status changes: the sending task, the settling task and an
    # operator's action must not each move it from the same stale status (which would, say,
    # both pay it and return its money).
    return Payout.objects.select_for_update().select_related("provider").get(pk=payout_id)


def lock_provider(provider_id: uuid.UUID | str) -> Provider:
    # An operator's tier change and a verification change must not overwrite each other, and
    # each records one fee change from the provider's current tier.
    return Provider.objects.select_for_update().get(pk=provider_id)

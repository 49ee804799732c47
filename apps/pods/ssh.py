"""SSH access to pods: the owner's public keys go into every pod they start, and a pod that
publishes 22/tcp shows the command that reaches it."""

import uuid
from collections import defaultdict
from collections.abc import Iterable

from apps.accounts.models import SshKey


def ssh_keys_by_owner(owner_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """Each owner's public keys, oldest first (one query for a whole scheduling batch)."""
    keys: dict[uuid.UUID, list[str]] = defaultdict(list)
    for user_id, public_key in (
        SshKey.objects.filter(user_id__in=set(owner_ids))
        .order_by("created_at", "id")
        .values_list("user_id", "public_key")
    ):
        keys[user_id].append(public_key)
    return keys


def ssh_public_keys(*, owner_id: uuid.UUID) -> list[str]:
    return ssh_keys_by_owner([owner_id]).get(owner_id, [])


def ssh_command(endpoints: dict[str, str]) -> str | None:
    """`ssh root@HOST -p PORT` for a pod whose 22/tcp is published, else None."""
    address = (endpoints or {}).get("22/tcp")
    if not address:
        return None
    host, _, port = address.rpartition(":")
    return f"ssh root@{host.strip('[]')} -p {port}"

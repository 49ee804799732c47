"""Users' SSH public keys: parsed and checked like `ssh-keygen -l` would, fingerprinted, and kept
once per user. Pods get every key of their owner (apps.pods.ssh)."""

import base64
import binascii
import hashlib
import struct
import uuid

from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from apps.accounts.models import SshKey, User

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MAX_KEYS_PER_USER = 50
MAX_KEY_CHARS = 8192


class SshKeyError(ValueError):
    """Not a usable public key (or a duplicate); the message says why."""


def parse_public_key(text: str) -> tuple[str, str]:
    """`(normalised "type base64 [comment]" line, SHA256 fingerprint)` or SshKeyError."""
    line = " ".join(text.strip().split())
    if not line or len(line) > MAX_KEY_CHARS or "\n" in text.strip():
        raise SshKeyError("Paste one public key line, e.g. “ssh-ed25519 AAAA… you@laptop”.")
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SshKeyError("A public key has a type and a base64 body: “ssh-ed25519 AAAA…”.")
    key_type, body = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        if key_type.startswith("-----BEGIN"):
            raise SshKeyError("This is a private key: paste the .pub file's line instead.")
        raise SshKeyError(f"Unsupported key type {key_type!r}; use one of {', '.join(KEY_TYPES)}.")
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SshKeyError("The key body is not valid base64.") from exc
    if len(blob) < 4:
        raise SshKeyError("The key body is too short.")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length].decode("ascii", "replace") != key_type:
        raise SshKeyError(f"The key body does not hold a {key_type} key.")
    if key_type == "ssh-rsa" and len(blob) < 200:
        raise SshKeyError("RSA keys must be at least 2048 bits.")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return line, f"SHA256:{digest}"


def keys_of(user: object) -> QuerySet[SshKey]:
    """The keys of `user` (none for an anonymous one): every query for keys goes through here."""
    return SshKey.objects.filter(user_id=getattr(user, "pk", None) or uuid.UUID(int=0))


def ssh_key_add(*, user: User, name: str, public_key: str) -> SshKey:
    """Keep a public key for `user`; SshKeyError for a bad, duplicate or one-too-many key."""
    line, fingerprint = parse_public_key(public_key)
    name = name.strip() or (line.split(" ", 2)[2] if line.count(" ") >= 2 else "key")[:100]
    if SshKey.objects.filter(user=user).count() >= MAX_KEYS_PER_USER:
        raise SshKeyError(f"At most {MAX_KEYS_PER_USER} keys per account.")
    try:
        with transaction.atomic():
            return SshKey.objects.create(
                user=user, name=name, public_key=line, fingerprint=fingerprint
            )
    except IntegrityError as exc:
        raise SshKeyError(f"This key ({fingerprint}) is already in your account.") from exc


def ssh_key_delete(*, key: SshKey) -> None:
    """Forget a key; pods started later no longer get it (running ones keep theirs)."""
    key.delete()

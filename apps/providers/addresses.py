"""Checks of where a payout goes: stablecoin addresses per chain and transaction hashes, with
EIP-55 checksums for EVM chains (keccak-256 from `eth-hash`), base58check for Tron and base58
public keys for Solana. A typo in an address sends money nowhere, so an EVM address must carry
its checksum (mixed case, as wallets show it)."""

import hashlib
import re
from dataclasses import dataclass

from eth_hash.auto import keccak

from apps.providers.models import PayoutMethod

EVM_CHAINS = frozenset({"ethereum", "polygon", "arbitrum", "optimism", "base", "bsc"})
# The stablecoins we pay out, and the chains each is paid on.
TOKEN_CHAINS: dict[str, frozenset[str]] = {
    "USDC": frozenset({"ethereum", "polygon", "arbitrum", "optimism", "base", "solana"}),
    "USDT": frozenset({"ethereum", "polygon", "arbitrum", "optimism", "bsc", "tron", "solana"}),
}
CHAINS = frozenset().union(*TOKEN_CHAINS.values())

_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_EVM_TX = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX_TX = re.compile(r"^[0-9a-fA-F]{64}$")
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


class AddressError(ValueError):
    """What is wrong with an address or hash, in words a provider can act on."""


def eip55_checksum(address: str) -> str:
    """The EIP-55 mixed-case form of a 20-byte hex address: each letter is upper case when
    the matching nibble of keccak256(lower-case hex) is 8 or more."""
    hex_part = address[2:].lower() if address[:2].lower() == "0x" else address.lower()
    digest = keccak(hex_part.encode("ascii")).hex()
    return "0x" + "".join(
        ch.upper() if ch.isalpha() and int(digest[i], 16) >= 8 else ch
        for i, ch in enumerate(hex_part)
    )


def b58decode(text: str) -> bytes:
    if not text or any(c not in _B58_INDEX for c in text):
        raise AddressError("Not base58 (letters and digits without 0, O, I and l).")
    number = 0
    for c in text:
        number = number * 58 + _B58_INDEX[c]
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def check_evm_address(address: str) -> str:
    if not _EVM_ADDRESS.match(address):
        raise AddressError("An EVM address is 0x followed by 40 hexadecimal digits.")
    hex_part = address[2:]
    if hex_part == hex_part.lower() or hex_part == hex_part.upper():
        raise AddressError(
            "Give the checksummed (mixed-case, EIP-55) address exactly as your wallet shows it."
        )
    if eip55_checksum(address) != address:
        raise AddressError("The EIP-55 checksum does not match: the address has a typo.")
    return address


def check_tron_address(address: str) -> str:
    raw = b58decode(address)
    if len(raw) != 25 or raw[0] != 0x41:
        raise AddressError("A Tron address is base58check of 21 bytes starting T.")
    payload, checksum = raw[:21], raw[21:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise AddressError("The base58check checksum does not match: the address has a typo.")
    return address


def check_solana_address(address: str) -> str:
    if len(b58decode(address)) != 32:
        raise AddressError("A Solana address is a base58 public key of 32 bytes.")
    return address


def check_address(chain: str, address: str) -> str:
    """The address, if it is valid on `chain`; otherwise AddressError."""
    if chain in EVM_CHAINS:
        return check_evm_address(address)
    if chain == "tron":
        return check_tron_address(address)
    if chain == "solana":
        return check_solana_address(address)
    raise AddressError(f"Unknown chain {chain!r}.")


def check_tx_hash(chain: str, tx_hash: str) -> str:
    """A transaction id in the form `chain` uses (0x+64 hex on EVM, 64 hex on Tron, a base58
    signature of 64 bytes on Solana)."""
    tx_hash = tx_hash.strip()
    if chain in EVM_CHAINS:
        if not _EVM_TX.match(tx_hash):
            raise AddressError("An EVM transaction hash is 0x followed by 64 hexadecimal digits.")
        return tx_hash.lower()
    if chain == "tron":
        if not _HEX_TX.match(tx_hash):
            raise AddressError("A Tron transaction id is 64 hexadecimal digits.")
        return tx_hash.lower()
    if chain == "solana":
        if len(b58decode(tx_hash)) != 64:
            raise AddressError("A Solana transaction signature is base58 of 64 bytes.")
        return tx_hash
    raise AddressError(f"Unknown chain {chain!r}.")


@dataclass(frozen=True)
class DetailsProblem:
    field: str
    message: str


def payout_details_problems(method: str, details: object) -> list[DetailsProblem]:
    """Every problem with `details` for `method` ("CRYPTO" or "PAYPAL"), each naming its field
    (`details.chain`, …). Empty: valid."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    if not isinstance(details, dict):
        return [DetailsProblem("details", "An object with the payout method's fields.")]
    if method == PayoutMethod.PAYPAL:
        allowed = {"email"}
        problems = [
            DetailsProblem(f"details.{k}", "Unknown field.") for k in details if k not in allowed
        ]
        email = details.get("email")
        if not isinstance(email, str) or not email.strip():
            problems.append(DetailsProblem("details.email", "Your PayPal account's email."))
        else:
            try:
                validate_email(email.strip())
            except ValidationError:
                problems.append(DetailsProblem("details.email", "Not a valid email address."))
        return problems
    if method == PayoutMethod.CRYPTO:
        allowed = {"currency", "chain", "address"}
        problems = [
            DetailsProblem(f"details.{k}", "Unknown field.") for k in details if k not in allowed
        ]
        currency, chain, address = (details.get(k) for k in ("currency", "chain", "address"))
        if currency not in TOKEN_CHAINS:
            problems.append(
                DetailsProblem("details.currency", f"One of {', '.join(sorted(TOKEN_CHAINS))}.")
            )
        if not isinstance(chain, str) or chain not in CHAINS:
            problems.append(
                DetailsProblem(
                    "details.chain", f"Unknown chain; one of {', '.join(sorted(CHAINS))}."
                )
            )
        elif currency in TOKEN_CHAINS and chain not in TOKEN_CHAINS[str(currency)]:
            problems.append(
                DetailsProblem(
                    "details.chain",
                    f"{currency} is paid on {', '.join(sorted(TOKEN_CHAINS[str(currency)]))}.",
                )
            )
        if not isinstance(address, str) or not address.strip():
            problems.append(DetailsProblem("details.address", "The wallet address to pay."))
        elif isinstance(chain, str) and chain in CHAINS:
            try:
                check_address(chain, address.strip())
            except AddressError as exc:
                problems.append(DetailsProblem("details.address", str(exc)))
        return problems
    return [DetailsProblem("method", "CRYPTO or PAYPAL.")]


def normalise_details(method: str, details: dict) -> dict:
    """The stored form of valid details (trimmed; emails lower-cased in the domain)."""
    if method == PayoutMethod.PAYPAL:
        return {"email": details["email"].strip()}
    return {
        "currency": details["currency"],
        "chain": details["chain"],
        "address": details["address"].strip(),
    }

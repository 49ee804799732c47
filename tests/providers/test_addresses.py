"""Payout destinations: EIP-55 checksums (the EIP's own test vectors), Tron base58check, Solana
keys, and the per-field problems the API reports."""

import pytest

from apps.providers.addresses import (
    AddressError,
    check_address,
    check_tx_hash,
    eip55_checksum,
    payout_details_problems,
)

# From EIP-55 itself: all caps, all lower, and mixed.
EIP55_VECTORS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_eip55_checksum_matches_the_eips_vectors(address):
    assert eip55_checksum(address.lower()) == address


def test_a_checksummed_evm_address_passes_and_a_typo_fails():
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert check_address("ethereum", good) == good
    with pytest.raises(AddressError, match="checksum"):
        check_address("ethereum", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")  # last letter
    with pytest.raises(AddressError, match="checksummed"):
        check_address("base", good.lower())
    with pytest.raises(AddressError, match="40 hexadecimal"):
        check_address("polygon", "0x1234")


def test_tron_and_solana_addresses():
    assert check_address("tron", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
    with pytest.raises(AddressError, match="checksum"):
        check_address("tron", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u")
    assert check_address("solana", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
    with pytest.raises(AddressError, match="32 bytes"):
        check_address("solana", "EPjFWdd5AufqSSqeM2qN1x")
    with pytest.raises(AddressError, match="base58"):
        check_address("solana", "0OIl")


def test_tx_hashes_per_chain():
    assert check_tx_hash("ethereum", "0x" + "Ab" * 32) == "0x" + "ab" * 32
    with pytest.raises(AddressError):
        check_tx_hash("ethereum", "0x1234")
    with pytest.raises(AddressError):
        check_tx_hash("tron", "0x" + "ab" * 32)


@pytest.mark.parametrize(
    ("method", "details", "field"),
    [
        ("CRYPTO", {"currency": "USDC", "chain": "dogechain", "address": "0x0"}, "details.chain"),
        ("CRYPTO", {"currency": "USDC", "chain": "tron", "address": "T"}, "details.chain"),
        ("CRYPTO", {"currency": "EURC", "chain": "ethereum", "address": "0x0"}, "details.currency"),
        (
            "CRYPTO",
            {
                "currency": "USDT",
                "chain": "ethereum",
                "address": "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            },
            "details.address",
        ),
        ("CRYPTO", {"currency": "USDT", "chain": "ethereum"}, "details.address"),
        ("PAYPAL", {"email": "not-an-email"}, "details.email"),
        ("PAYPAL", {"email": "a@b.co", "iban": "x"}, "details.iban"),
        ("WIRE", {}, "method"),
    ],
)
def test_each_problem_names_its_field(method, details, field):
    assert field in {p.field for p in payout_details_problems(method, details)}

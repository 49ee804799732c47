"""Reference prices for generating simulated markets ($ per GPU-hour, roughly what the
marketplaces asked in 2026)."""

BASE_PRICE: dict[str, float] = {
    "RTX 3090": 0.22,
    "RTX 4090": 0.35,
    "RTX 5090": 0.65,
    "RTX A4000": 0.17,
    "RTX A5000": 0.26,
    "RTX A6000": 0.49,
    "RTX 6000 Ada": 0.77,
    "A10": 0.75,
    "A40": 0.40,
    "L4": 0.43,
    "L40S": 0.86,
    "A100 40GB": 1.29,
    "A100 80GB PCIe": 1.19,
    "A100 80GB SXM": 1.39,
    "H100 PCIe": 2.09,
    "H100 SXM": 2.29,
    "H100 NVL": 2.59,
    "H200": 3.29,
    "B200": 4.99,
    "V100": 0.50,
    "T4": 0.20,
}

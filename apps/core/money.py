"""Money is an int of micro-dollars (1 USD = 1,000,000), never a float. One place formats,
parses and prorates it."""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000


def usd_to_micros(amount: str | int | Decimal) -> int:
    """'2.49' → 2_490_000. Rejects values finer than a micro-dollar."""
    try:
        value = Decimal(str(amount)) * MICROS_PER_USD
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {amount!r}") from exc
    if value != value.to_integral_value():
        raise ValueError(f"{amount!r} has more precision than a micro-dollar")
    return int(value)


def micros_to_usd(micros: int, places: int = 2) -> str:
    """2_490_000 → '2.49' (banker's rounding at `places`)."""
    quantum = Decimal(1).scaleb(-places)
    return str((Decimal(micros) / MICROS_PER_USD).quantize(quantum, rounding=ROUND_HALF_EVEN))


def prorate(*, per_hour: int, seconds: int) -> int:
    """Charge for `seconds` at `per_hour` micro-dollars an hour, rounded half-even to the
    micro-dollar."""
    exact = Decimal(per_hour) * seconds / 3600
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

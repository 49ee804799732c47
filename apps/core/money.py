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


def prorate_increment(*, per_hour: int, billed_seconds: int, seconds: int) -> int:
    """The charge for the next `seconds` of something already charged for `billed_seconds` at
    `per_hour`: the cumulative price rounded once, less what the earlier charges took. However
    the time is cut into intervals, the charges add up to `prorate(per_hour, total)` exactly."""
    return prorate(per_hour=per_hour, seconds=billed_seconds + seconds) - prorate(
        per_hour=per_hour, seconds=billed_seconds
    )


def split_with_carry(*, amount: int, percent: int, carry: int) -> tuple[int, int]:
    """`percent` of `amount`, in whole micro-dollars, with the sub-micro-dollar remainder
    (`carry`, in hundredths of a micro-dollar, 0–99) carried to the next split. Returns
    (share, new carry): over any run of splits the shares sum to ⌊Σ amount × percent / 100⌋,
    rounded once, and the rest of each amount stays with the other party."""
    if not 0 <= percent <= 100 or not 0 <= carry < 100:
        raise ValueError(f"percent {percent} or carry {carry} out of range")
    share, carry = divmod(carry + amount * percent, 100)
    return share, carry

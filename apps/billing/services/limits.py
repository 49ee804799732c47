"""A user's own spend controls (DESIGN.md §3 "spend controls"): the monthly cap and the maximum
hourly burn that the metering tick and pod creation enforce (apps/billing/spend.py)."""

from apps.accounts.models import User
from apps.billing.models import SpendLimit


def spend_limits_set(
    *, user: User, monthly_cap: int | None, max_hourly_burn: int | None
) -> SpendLimit:
    """Set both limits in micro-dollars (None: no limit). Takes effect at the next metering
    tick and the next pod creation."""
    for name, value in (("monthly_cap", monthly_cap), ("max_hourly_burn", max_hourly_burn)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} is an int of micro-dollars or None.")
        if value is not None and value < 0:
            raise ValueError(f"{name} cannot be negative.")
    limit, _ = SpendLimit.objects.update_or_create(
        user=user, defaults={"monthly_cap": monthly_cap, "max_hourly_burn": max_hourly_burn}
    )
    return limit

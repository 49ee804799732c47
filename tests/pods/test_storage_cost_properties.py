"""Storage billing charges the cumulative cost's differences, so however a volume's minutes are
cut into ticks, the charges add up to the cost of all of them, none is negative, and the rate
is the price: a 30-day month of one GB costs exactly the GB-month price."""

from hypothesis import given
from hypothesis import strategies as st

from apps.pods.storage_billing import MINUTES_PER_MONTH, storage_cost


@given(
    size_gb=st.integers(min_value=1, max_value=100_000),
    price=st.integers(min_value=0, max_value=10_000_000),
    cuts=st.lists(st.integers(min_value=0, max_value=4 * MINUTES_PER_MONTH), max_size=30),
)
def test_ticks_add_up_to_the_whole_and_never_go_negative(size_gb, price, cuts):
    points = sorted({0, *cuts})
    charges = [
        storage_cost(size_gb=size_gb, price_per_gb_month=price, minutes=b)
        - storage_cost(size_gb=size_gb, price_per_gb_month=price, minutes=a)
        for a, b in zip(points, points[1:], strict=False)
    ]
    assert all(c >= 0 for c in charges)
    assert sum(charges) == storage_cost(
        size_gb=size_gb, price_per_gb_month=price, minutes=points[-1]
    )


@given(size_gb=st.integers(min_value=1, max_value=100_000), price=st.integers(0, 10_000_000))
def test_a_month_costs_exactly_size_times_price(size_gb, price):
    cost = storage_cost(size_gb=size_gb, price_per_gb_month=price, minutes=MINUTES_PER_MONTH)
    assert cost == size_gb * price

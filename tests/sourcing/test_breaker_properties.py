"""Property-based checks of the circuit breaker's state machine and of the markup."""

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.sourcing.breaker import BreakerState, CircuitBreaker
from apps.sourcing.ranking import with_markup

EVENTS = st.lists(
    st.one_of(
        st.just(("allow",)),
        st.just(("success",)),
        st.just(("failure",)),
        st.just(("block",)),
        st.just(("reset",)),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=100)),
    ),
    max_size=60,
)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, threshold=st.integers(1, 6))
def test_breaker_invariants(events, threshold):
    clock = Clock()
    breaker = CircuitBreaker(provider="p", failure_threshold=threshold, reset_after=30, clock=clock)
    probes = 0
    for event in events:
        before = breaker.state
        if event[0] == "wait":
            clock.now += event[1]
            continue
        if event[0] == "allow":
            allowed = breaker.allow()
            if before == BreakerState.BLOCKED:
                assert not allowed  # blocked until an operator resets it, whatever the time
            if before == BreakerState.CLOSED:
                assert allowed
            if before == BreakerState.OPEN and breaker.opened_at is not None:
                assert allowed == (breaker.state == BreakerState.HALF_OPEN)
            if allowed and breaker.state == BreakerState.HALF_OPEN:
                probes += 1
                assert probes == 1  # one probe at a time while half-open
            continue
        probes = 0
        if event[0] == "success":
            breaker.record_success()
            if before != BreakerState.BLOCKED:
                assert breaker.state == BreakerState.CLOSED and breaker.failures == 0
        elif event[0] == "failure":
            breaker.record_failure("x")
            if before == BreakerState.HALF_OPEN:
                assert breaker.state == BreakerState.OPEN
            if before == BreakerState.BLOCKED:
                assert breaker.state == BreakerState.BLOCKED
        elif event[0] == "block":
            breaker.block("bad key")
            assert breaker.state == BreakerState.BLOCKED
        elif event[0] == "reset":
            breaker.reset()
            assert breaker.state == BreakerState.CLOSED
        if breaker.state == BreakerState.CLOSED:
            assert breaker.failures < threshold


@given(upstream=st.integers(0, 10**10), percent=st.integers(0, 500))
def test_markup_is_never_below_cost_and_rounds_up_by_less_than_a_micro_dollar(upstream, percent):
    ours = with_markup(upstream, percent)
    exact = upstream * (100 + percent)
    assert ours * 100 >= exact > (ours - 1) * 100
    assert ours >= upstream

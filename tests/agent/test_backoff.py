"""Retry timing of the HTTP client (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.client import MAX_RETRY_AFTER_S, backoff_delay, retry_after_seconds


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 61, 62, 1000])
def test_backoff_stays_within_full_jitter_bounds(attempt: int) -> None:
    ceiling = min(30.0, 0.5 * 2 ** min(attempt, 62))
    assert backoff_delay(attempt, rand=lambda: 0.0) == 0.0
    assert backoff_delay(attempt, rand=lambda: 1.0) == pytest.approx(ceiling)
    assert 0.0 <= backoff_delay(attempt) <= ceiling


def test_backoff_grows_then_caps() -> None:
    ceilings = [backoff_delay(a, base=1.0, cap=8.0, rand=lambda: 1.0) for a in range(6)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_never_negative_or_over_cap_with_a_bad_random_source() -> None:
    assert backoff_delay(3, cap=5.0, rand=lambda: 7.0) == 4.0  # min(5, 0.5 * 2**3)
    assert backoff_delay(9, cap=5.0, rand=lambda: 7.0) == 5.0
    assert backoff_delay(3, cap=5.0, rand=lambda: -1.0) == 0.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("1e9", MAX_RETRY_AFTER_S),
        ("Thu, 26 Nov 2026 10:00:30 GMT", 30.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(header, now=now) == expected

"""Rounds are evaluated at their poll's due time, so `for` is counted in whole intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watchdog.service import Cadence

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
FIVE = timedelta(seconds=5)


def ms(milliseconds: float) -> timedelta:
    return timedelta(milliseconds=milliseconds)


def test_polls_started_a_little_late_are_due_exactly_one_interval_apart() -> None:
    cadence = Cadence(FIVE, due=T0 - FIVE)
    starts = [T0 + ms(3), T0 + FIVE + ms(9), T0 + 2 * FIVE + ms(1)]
    assert [cadence.due_at(start) for start in starts] == [T0, T0 + FIVE, T0 + 2 * FIVE]


def test_a_skipped_poll_keeps_the_grid_and_a_poll_far_off_it_starts_a_new_one() -> None:
    cadence = Cadence(FIVE, due=T0)
    assert cadence.due_at(T0 + 2 * FIVE + ms(4)) == T0 + 2 * FIVE
    off_grid = T0 + 3 * FIVE + timedelta(seconds=2)  # a stepped clock, a blocked loop
    assert cadence.due_at(off_grid) == off_grid
    assert cadence.due_at(off_grid + FIVE + ms(2)) == off_grid + FIVE

from datetime import timedelta

import pytest

from watchdog.alerts import Finding, State, Timing, advance
from watchdog.clock import SteadyClock


class Clocks:
    """A wall clock that can be stepped and a monotonic clock that cannot."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.monotonic = 50.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds


def test_steady_clock_follows_the_wall_clock_while_it_is_not_stepped() -> None:
    clocks = Clocks()
    clock = SteadyClock(lambda: clocks.wall, lambda: clocks.monotonic)
    start = clock()
    assert start.timestamp() == clocks.wall
    clocks.tick(30)
    assert clock() - start == timedelta(seconds=30)


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_a_stepped_wall_clock_neither_fires_nor_resolves_early(
        step: float, caplog: pytest.LogCaptureFixture) -> None:
    clocks = Clocks()
    clock = SteadyClock(lambda: clocks.wall, lambda: clocks.monotonic)
    timing = Timing(for_=timedelta(minutes=10))
    finding = Finding({"alertname": "A", "cluster": "c"}, {})
    alert = advance(None, finding, timing, clock())
    clocks.tick(10)
    clocks.wall += step
    alert = advance(alert, finding, timing, clock())
    assert alert is not None and alert.state is State.PENDING
    clocks.tick(600)
    alert = advance(alert, finding, timing, clock())
    assert alert is not None and alert.state is State.FIRING
    assert sum("system clock moved" in r.message for r in caplog.records) == 1

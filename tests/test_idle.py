"""Many connections' deadlines on one loop timer, on a loop whose clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from gateway.idle import SLACK, Expiry


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """The two loop methods an :class:`Expiry` uses, with time moved by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []
        self.made = 0
        self.fired = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.made += 1
        self.handles.append(handle)
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock, firing each due handle in order, as a loop would."""
        end = self.now + seconds
        while due := [h for h in self.handles if not h.cancelled and h.when <= end]:
            handle = min(due, key=lambda h: h.when)
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            self.fired += 1
            handle.callback()
        self.now = end

    @property
    def armed(self) -> int:
        return sum(not h.cancelled for h in self.handles)


def expiry(clock: Clock, expired: list[tuple[str, float]], granularity: float = 0.0) -> Expiry[str]:
    def expire(owner: str) -> None:
        expired.append((owner, clock.now))

    loop = cast(asyncio.AbstractEventLoop, cast(Any, clock))
    return Expiry(expire, granularity=granularity, loop=loop)


def test_an_owner_expires_at_its_deadline_once() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired)
    deadlines.after("a", 10)
    clock.advance(9.9)
    assert expired == []
    clock.advance(0.2)
    assert expired == [("a", 110.0)]
    assert len(deadlines) == 0 and clock.armed == 0  # nothing held, nothing armed
    clock.advance(100)
    assert expired == [("a", 110.0)]


def test_a_cleared_owner_does_not_expire() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired)
    deadlines.after("a", 10)
    deadlines.clear("a")
    deadlines.clear("never set")
    clock.advance(100)
    assert expired == [] and clock.armed == 0


def test_a_deadline_set_and_cleared_per_request_arms_one_timer_per_timeout() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired)
    deadlines.after("conn", 10)
    for _ in range(50):  # a request every 0.5 s for 25 s: never idle for 10 s
        deadlines.clear("conn")  # busy
        clock.advance(0.25)
        deadlines.after("conn", 10)  # idle again
        clock.advance(0.25)
    assert expired == []
    # The first timer (for 110) found no deadline due and re-armed for the connection's (119.75
    # then): three handles for fifty requests, where arming and cancelling would make fifty.
    assert clock.made == 3
    last_idle = clock.now - 0.25
    clock.advance(10)
    assert expired == [("conn", last_idle + 10)]


def test_an_earlier_deadline_rearms_a_later_one_waits() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired)
    deadlines.set("a", 130)
    deadlines.set("b", 160)  # later: the timer armed for 130 serves
    assert clock.made == 1
    deadlines.set("c", 110)  # earlier: armed anew
    assert clock.made == 2 and clock.armed == 1
    clock.advance(70)
    assert expired == [("c", 110.0), ("a", 130.0), ("b", 160.0)]


def test_the_granularity_bounds_how_often_it_scans_and_how_late_it_acts() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired, granularity=1.0)
    for i in range(1000):  # deadlines 1 ms apart over one second
        deadlines.set(f"c{i}", 110 + i / 1000)
    clock.advance(20)
    assert len(expired) == 1000
    assert clock.fired <= 3  # not one scan per owner
    late = [at - (110 + int(owner[1:]) / 1000) for owner, at in expired]
    assert min(late) > -2 * SLACK and max(late) <= 1.0 + SLACK


def test_a_deadline_a_rounding_error_away_counts_as_due() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired)
    deadlines.set("a", 110)
    handle = clock.handles.pop()
    clock.now = 110 - SLACK / 10  # uvloop counts whole milliseconds
    handle.callback()
    assert expired == [("a", clock.now)] and clock.armed == 0


def test_one_failing_owner_does_not_keep_the_others(caplog: pytest.LogCaptureFixture) -> None:
    clock, expired = Clock(), []

    def expire(owner: str) -> None:
        if owner == "bad":
            raise RuntimeError("boom")
        expired.append((owner, clock.now))

    deadlines = Expiry(expire, loop=cast(asyncio.AbstractEventLoop, cast(Any, clock)))
    deadlines.set("bad", 110)
    deadlines.set("good", 110)
    clock.advance(20)
    assert expired == [("good", 110.0)]
    assert "expiring a connection's deadline failed" in caplog.text


def test_close_forgets_every_deadline() -> None:
    clock, expired = Clock(), []
    deadlines = expiry(clock, expired)
    deadlines.set("a", 110)
    deadlines.close()
    clock.advance(100)
    assert expired == [] and len(deadlines) == 0 and clock.armed == 0


async def test_on_the_running_loop() -> None:
    fired = asyncio.Event()
    deadlines: Expiry[str] = Expiry(lambda owner: fired.set())
    deadlines.after("a", 0.05)
    await asyncio.sleep(0.02)
    deadlines.clear("a")
    deadlines.after("a", 0.05)  # due 0.05 s from here: the timer armed first waits again
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(fired.wait(), 2)
    assert asyncio.get_running_loop().time() - started >= 0.05 - 0.01
    assert len(deadlines) == 0

"""The lazily re-armed idle timer, on a loop whose clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from gateway.idle import SLACK, IdleTimer


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """The two loop methods the timer uses, with time moved by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []
        self.made = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.made += 1
        self.handles.append(handle)
        return handle

    def advance(self, seconds: float) -> None:
        """Move the clock, firing each due handle (in order, as a loop would)."""
        end = self.now + seconds
        while True:
            due = [h for h in self.handles if not h.cancelled and h.when <= end]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.handles.remove(handle)
            self.now = max(self.now, handle.when)
            handle.callback()
        self.now = end

    @property
    def armed(self) -> int:
        return sum(not h.cancelled for h in self.handles)


def timer(clock: Clock, expired: list[float], timeout: float = 10.0) -> IdleTimer:
    loop = cast(asyncio.AbstractEventLoop, cast(Any, clock))
    return IdleTimer(loop, timeout, lambda: expired.append(clock.now))


def test_it_expires_a_timeout_after_falling_idle() -> None:
    clock, expired = Clock(), []
    idle = timer(clock, expired)
    idle.idle()
    clock.advance(9.9)
    assert expired == []
    clock.advance(0.2)
    assert expired == [110.0]
    assert clock.armed == 0  # once: nothing is left armed
    clock.advance(100)
    assert expired == [110.0]


def test_requests_back_to_back_arm_one_timer_and_the_last_idle_counts() -> None:
    clock, expired = Clock(), []
    idle = timer(clock, expired)
    idle.idle()
    for _ in range(50):  # a request every 0.5 s for 25 s: never idle for 10 s
        idle.busy()
        clock.advance(0.25)
        idle.idle()
        clock.advance(0.25)
    assert expired == []
    # The first timer fired on a busy connection (at 110), the next idle armed one (for
    # 120.25), which found it idle since 120.25 and waited again: three handles for fifty
    # requests, where cancelling and re-arming would have made fifty.
    assert clock.made == 3
    last_idle = clock.now - 0.25
    clock.advance(10)
    assert expired == [last_idle + 10]


def test_a_timer_that_fires_while_busy_waits_for_the_next_idle() -> None:
    clock, expired = Clock(), []
    idle = timer(clock, expired)
    idle.idle()
    clock.advance(1)
    idle.busy()  # a long request: longer than the timeout
    clock.advance(30)
    assert expired == [] and clock.armed == 0
    idle.idle()
    assert clock.armed == 1
    clock.advance(10)
    assert expired == [141.0]


def test_cancel_is_for_good() -> None:
    clock, expired = Clock(), []
    idle = timer(clock, expired)
    idle.idle()
    idle.cancel()
    clock.advance(100)
    assert expired == [] and clock.armed == 0


def test_a_timer_a_rounding_error_early_counts_as_due() -> None:
    clock, expired = Clock(), []
    idle = timer(clock, expired)
    idle.idle()
    handle = clock.handles[0]
    clock.now = handle.when - SLACK / 10  # uvloop counts whole milliseconds
    clock.handles.clear()
    handle.callback()
    assert expired == [clock.now]
    assert clock.armed == 0


async def test_on_the_running_loop() -> None:
    fired = asyncio.Event()
    idle = IdleTimer(asyncio.get_running_loop(), 0.05, fired.set)
    idle.idle()
    await asyncio.sleep(0.02)
    idle.busy()
    idle.idle()  # idle again: due 0.05 s from here, by the timer armed first
    await asyncio.wait_for(fired.wait(), 2)
    assert idle.idle_since is None


def test_cancel_lets_go_of_the_owner() -> None:
    clock, expired = Clock(), []
    idle = timer(clock, expired)
    idle.cancel()
    idle.idle()  # after cancel: nothing
    assert clock.made == 0
    assert idle._expire is None  # the owner's method: kept, it would be a reference cycle

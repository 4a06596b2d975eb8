"""``gateway.redis_client.LeaseRefresher``: the loop that keeps a replica's leases alive."""

from __future__ import annotations

import asyncio

from gateway.redis_client import LeaseRefresher


class StoreDown(Exception):
    pass


class Leases:
    def __init__(self, *, fail: int = 0) -> None:
        self.held = {"a": 1}
        self.refreshes = 0
        self.fail = fail
        self.reported: list[Exception] = []

    async def refresh(self) -> None:
        self.refreshes += 1
        if self.refreshes <= self.fail:
            raise StoreDown("down")

    def refresher(self, period: float = 0.005) -> LeaseRefresher:
        return LeaseRefresher(
            self.refresh, lambda: bool(self.held), period, StoreDown, self.reported.append
        )


async def test_refreshes_while_a_lease_is_held_then_stops() -> None:
    leases = Leases()
    refresher = leases.refresher()
    refresher.ensure()
    refresher.ensure()  # one loop, not two
    await asyncio.sleep(0.05)
    assert 1 <= leases.refreshes <= 12  # one loop at 5 ms: at most 10 (two would make 20)
    leases.held.clear()
    await asyncio.sleep(0.02)
    settled = leases.refreshes
    await asyncio.sleep(0.03)
    assert leases.refreshes == settled  # the loop ended with the last lease
    leases.held["b"] = 1
    refresher.ensure()  # a new lease starts it again
    await asyncio.sleep(0.03)
    assert leases.refreshes > settled
    await refresher.close()


async def test_a_failed_refresh_is_reported_and_the_loop_goes_on() -> None:
    leases = Leases(fail=2)
    refresher = leases.refresher()
    refresher.ensure()
    await asyncio.sleep(0.06)
    await refresher.close()
    assert [str(e) for e in leases.reported] == ["down", "down"]
    assert leases.refreshes > 2


async def test_close_stops_the_loop() -> None:
    leases = Leases()
    refresher = leases.refresher()
    refresher.ensure()
    await refresher.close()
    count = leases.refreshes
    await asyncio.sleep(0.03)
    assert leases.refreshes == count
    await refresher.close()  # twice is fine

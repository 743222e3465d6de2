"""Client-side pacing for requests-per-minute and tokens-per-minute limits.

A token bucket per limit refills at ``limit / 60`` per second and holds at most
one second's worth (at least one request's worth), so requests are spread
evenly instead of bursting a whole minute's quota at start-up.  A request
larger than the bucket waits for a full bucket and then drives it negative,
which makes the following requests wait for the debt: over any minute the
limit holds.  Token counts are estimated before a call and corrected with the
server's usage afterwards (:meth:`TokenBucket.settle`).
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, per_minute: float) -> None:
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self, amount: float) -> None:
        """Wait until ``amount`` may be spent, then spend it."""
        async with self._lock:  # first come, first served
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def settle(self, estimated: float, actual: float) -> None:
        """Correct an earlier :meth:`take` of ``estimated`` once the ``actual`` amount is known."""
        self._refill()
        self.level = min(self.capacity, self.level + estimated - actual)

"""Steady admin traffic that remembers every acknowledged change, so a test can account for each one."""

import asyncio
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp

from tests.support.catalog import price_set
from tests.support.stack import Stack


@dataclass
class PriceTraffic:
    """Publishes price.set events with unique prices to the given items, one at a time, until stopped."""

    stack: Stack
    items: list[tuple[str, str, str]]  # (city, restaurant_id, item_id)
    interval_s: float = 0.02
    acked: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    event_ids: list[str] = field(default_factory=list)
    failures: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        prices = itertools.count(10_000)
        rng = random.Random(7)
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                city, restaurant_id, item_id = rng.choice(self.items)
                price = next(prices)
                response = await self.stack.post_events(session, price_set(city, restaurant_id, item_id, price))
                if response.status == 202:
                    self.acked[(city, item_id)].append(price)
                    self.event_ids.extend((await response.json())["event_ids"])
                else:
                    self.failures += 1
                await asyncio.sleep(self.interval_s)

    @property
    def total(self) -> int:
        return len(self.event_ids)

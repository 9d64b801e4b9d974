"""The delivery guard and the guarded consumer together, under a fetcher that loses records in flight, re-reads
after seeks, and rebalances at any moment: nothing is committed before it is processed, records are processed
in offset order, and once the losses stop everything is processed and committed."""

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import pytest
from faust.types import TP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.topics import catalog_topic_name
from streams import delivery
from streams.delivery import STALL_REWIND_AFTER_S
from tests.support.fakes import FakeClock, GuardedPipeline, PartitionLog, guarded_pipeline

CATALOG = catalog_topic_name("unit")
TP0 = TP(CATALOG, 0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(delivery, "time", fake)
    return fake


Action = Literal["fetch", "deliver", "lose", "commit", "idle", "rebalance"]
LOG_SIZE = 12


@dataclass
class LossyFetch:
    """One guarded partition of LOG_SIZE records, read the way Faust reads it: fetched records wait in flight
    (a seek does not recall them), Faust's fetch loop drops a record below its read position, and the
    agent admits, processes and acks each record it is handed. Faust may also lose a record in flight."""

    pipeline: GuardedPipeline
    clock: FakeClock
    tp: TP = TP0
    generation: int = 1
    in_flight: deque[int] = field(default_factory=deque)
    processed: list[tuple[int, int]] = field(default_factory=list)  # (generation, offset)
    generation_start: dict[int, int] = field(default_factory=lambda: {1: 0})

    @property
    def log(self) -> PartitionLog:
        return self.pipeline.kafka.logs[self.tp]

    async def run(self, action: Action) -> None:
        self.clock.advance(0.1)
        if action == "fetch":
            while self.log.position < LOG_SIZE and len(self.in_flight) < 4:
                self.in_flight.append(self.log.position)
                self.log.position += 1
        elif action == "deliver" and self.in_flight:
            await self._deliver(self.in_flight.popleft())
        elif action == "lose" and self.in_flight:
            self.in_flight.popleft()
        elif action == "commit":
            self.commit()
        elif action == "idle":
            self.clock.advance(STALL_REWIND_AFTER_S)
            await self.pipeline.guard.rewind_stalled(self.pipeline.app)
        elif action == "rebalance":
            self._rebalance()

    async def _deliver(self, offset: int) -> None:
        positions = self.pipeline.consumer._read_offset
        read = positions[self.tp]
        if read is not None and offset < read:
            return  # Faust's fetch loop: "DROPPED MESSAGE ROFF"
        if await self.pipeline.handle(self.tp, offset, self.generation):
            self.processed.append((self.generation, offset))
        positions[self.tp] = offset

    def commit(self) -> None:
        committed = self.pipeline.commit(self.tp)
        if committed is not None:
            done = {offset for _, offset in self.processed}
            assert set(range(committed)) <= done, f"committed {committed} before processing {sorted(done)}"

    def _rebalance(self) -> None:
        self.in_flight.clear()
        start = self.pipeline.reassign(self.tp)
        self.generation += 1
        self.generation_start[self.generation] = start

    async def settle(self) -> None:
        """No more losses: fetch, deliver, commit, and let the watchdog find what was lost at the end."""
        self.pipeline.recovery_completed.set()
        for _ in range(20 * LOG_SIZE):
            if self.log.committed == LOG_SIZE:
                return
            if self.in_flight:
                await self.run("deliver")
            elif self.log.position < LOG_SIZE:
                await self.run("fetch")
            else:
                await self.run("idle")
            self.commit()
        raise AssertionError(f"stuck at {self.log.committed}, processed {self.processed}")


actions = st.lists(st.sampled_from(["fetch", "deliver", "deliver", "lose", "commit", "idle", "rebalance"]), max_size=60)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=actions)
async def test_under_any_losses_nothing_is_committed_unprocessed_and_everything_is_processed(
    script: list[Action], clock: FakeClock
) -> None:
    pipeline = guarded_pipeline({CATALOG})
    pipeline.kafka.partition(TP0, end=LOG_SIZE)
    fetch = LossyFetch(pipeline, clock)

    for action in script:
        await fetch.run(action)
    await fetch.settle()

    assert {offset for _, offset in fetch.processed} == set(range(LOG_SIZE))
    for generation, start in fetch.generation_start.items():
        in_generation = [offset for gen, offset in fetch.processed if gen == generation]
        assert in_generation == list(range(start, start + len(in_generation))), "processed out of order"
    if "rebalance" not in script:
        assert len(fetch.processed) == LOG_SIZE, "an event was processed twice without a rebalance"

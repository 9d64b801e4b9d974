"""The delivery guard and the guarded consumer together, under a fetcher that loses records in flight, hands some
twice, re-reads after seeks, and rebalances at any moment, with records that fail to process and operators who
replay: nothing is committed before it is processed, records are processed in offset order, and once the losses
stop everything is processed and committed."""

from collections import deque
from dataclasses import dataclass, field
from itertools import count
from typing import Literal
from unittest import mock

import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from core.topics import catalog_topic_name
from streams import delivery
from streams.delivery import STALL_REWIND_AFTER_S, ReplayWouldSkip
from tests.support.fakes import FakeClock, GuardedPipeline, PartitionLog, guarded_pipeline

CATALOG = catalog_topic_name("unit")

Action = Literal["fetch", "deliver", "repeat", "fail", "lose", "commit", "idle", "rebalance", "replay", "replay ahead"]
LOG_SIZE = 12

# One pipeline and one clock for every example (building a pipeline takes longer than an example): each example
# reads a partition of its own, and its generations follow those of the examples before it, as a worker's do.
pipeline = guarded_pipeline({CATALOG})
pipeline.recovery_completed.set()
clock = FakeClock()
partition_numbers = count()
generations = count(1)


@dataclass
class LossyFetch:
    """One guarded partition of LOG_SIZE records, read the way Faust reads it: fetched records wait in flight
    (a seek does not recall them), Faust's fetch loop drops a record below its read position, and the
    agent admits, processes and acks each record it is handed. Faust may also lose a record in flight, or hand
    one over twice; processing a record may fail; an operator may ask for records to be processed again."""

    pipeline: GuardedPipeline
    tp: TP
    generation: int = field(default_factory=lambda: next(generations))
    in_flight: deque[int] = field(default_factory=deque)
    processed: list[tuple[int, int]] = field(default_factory=list)  # (run, offset)
    run_starts: list[int] = field(default_factory=lambda: [0])  # where each run of processing began

    @property
    def log(self) -> PartitionLog:
        return self.pipeline.kafka.logs[self.tp]

    @property
    def next_offset(self) -> int:
        """Where processing goes on from: the offset after the last one the current run processed."""
        run = len(self.run_starts) - 1
        done = [offset for each, offset in self.processed if each == run]
        return done[-1] + 1 if done else self.run_starts[-1]

    async def run(self, action: Action) -> None:
        clock.advance(0.1)
        if action == "fetch":
            while self.log.position < LOG_SIZE and len(self.in_flight) < 4:
                self.in_flight.append(self.log.position)
                self.log.position += 1
        elif action in ("deliver", "fail") and self.in_flight:
            await self._deliver(self.in_flight.popleft(), fails=action == "fail")
        elif action == "repeat" and self.in_flight:
            self.in_flight.appendleft(self.in_flight[0])
        elif action == "lose" and self.in_flight:
            self.in_flight.popleft()
        elif action == "commit":
            self.commit()
        elif action == "idle":
            clock.advance(STALL_REWIND_AFTER_S)
            await self.pipeline.guard.rewind_stalled(self.pipeline.app)
        elif action == "rebalance":
            self.in_flight.clear()
            self.run_starts.append(self.pipeline.reassign(self.tp))
            self.generation = self.pipeline.app.consumer_generation_id = next(generations)
        elif action == "replay":
            start = max(0, self.next_offset - 3)
            await self.pipeline.guard.replay(self.pipeline.app, self.tp, start)
            self.run_starts.append(start)
        elif action == "replay ahead":  # it would skip records: refused
            with pytest.raises(ReplayWouldSkip):
                await self.pipeline.guard.replay(self.pipeline.app, self.tp, self.next_offset + 1)

    async def _deliver(self, offset: int, fails: bool) -> None:
        positions = self.pipeline.consumer._read_offset
        read = positions[self.tp]
        if read is not None and offset < read:
            return  # Faust's fetch loop: "DROPPED MESSAGE ROFF"
        if await self.pipeline.handle(self.tp, offset, self.generation, fails=fails) and not fails:
            self.processed.append((len(self.run_starts) - 1, offset))
        positions[self.tp] = offset

    def commit(self) -> None:
        committed = self.pipeline.commit(self.tp)
        if committed is not None:
            done = {offset for _, offset in self.processed}
            assert set(range(committed)) <= done, f"committed {committed} before processing {sorted(done)}"

    async def settle(self) -> None:
        """No more losses: fetch, deliver, commit, and let the watchdog find what was lost at the end."""
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


actions = st.lists(
    st.sampled_from(
        [
            "fetch",
            "deliver",
            "deliver",
            "repeat",
            "fail",
            "lose",
            "commit",
            "idle",
            "rebalance",
            "replay",
            "replay ahead",
        ]
    ),
    max_size=60,
)


@given(script=actions)
async def test_under_any_losses_nothing_is_committed_unprocessed_and_everything_is_processed(
    script: list[Action],
) -> None:
    tp = TP(CATALOG, next(partition_numbers))
    pipeline.kafka.partition(tp, end=LOG_SIZE)
    fetch = LossyFetch(pipeline, tp)
    pipeline.app.consumer_generation_id = fetch.generation

    with mock.patch.object(delivery, "time", clock):
        for action in script:
            await fetch.run(action)
        await fetch.settle()

    assert {offset for _, offset in fetch.processed} == set(range(LOG_SIZE))
    for run, start in enumerate(fetch.run_starts):
        in_run = [offset for each, offset in fetch.processed if each == run]
        assert in_run == list(range(start, start + len(in_run))), "processed out of order"
    if not {"rebalance", "replay"} & set(script):
        assert len(fetch.processed) == LOG_SIZE, "an event was processed twice without a rebalance or a replay"

"""The delivery guard and the guarded consumer under any arrivals, on two partitions at once: records repeated,
out of order, with holes, some failing to process, and rebalances between them. Whatever arrives, a partition's
records are processed in offset order from its committed offset, each once per generation; a record past a
hole is not processed but answered with a seek to the first unprocessed offset; and a commit covers exactly
what was processed."""

from dataclasses import dataclass, field
from itertools import count
from unittest import mock

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from core.topics import catalog_topic_name
from streams import delivery
from tests.support.fakes import FakeClock, GuardedPipeline, guarded_pipeline

CATALOG = catalog_topic_name("unit")
LOG_SIZE = 10

# One pipeline for every example (building one takes longer than an example): each example reads partitions
# of its own, and its generations follow those of the examples before it, as a worker's do.
pipeline = guarded_pipeline({CATALOG})
partition_numbers = count()
generations = count(1)

Step = tuple[str, int, int]  # (kind, partition index, offset)


@dataclass
class Partition:
    """What the test knows of one partition: where this generation started, and what it processed."""

    tp: TP
    start: int
    processed: list[int] = field(default_factory=list)
    processed_ever: set[int] = field(default_factory=set)

    @property
    def first_unprocessed(self) -> int:
        return self.start + len(self.processed)

    def latest_seek(self, guarded: GuardedPipeline) -> int | None:
        return next((offset for tp, offset in reversed(guarded.kafka.seeks) if tp == self.tp), None)


def partition(committed: int | None) -> Partition:
    tp = TP(CATALOG, next(partition_numbers))
    log = pipeline.kafka.partition(tp, end=LOG_SIZE, committed=committed)
    if committed is not None:
        pipeline.consumer._committed_offset[tp] = committed
    return Partition(tp, start=log.position)


steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["arrive", "arrive", "fail"]), st.integers(0, 1), st.integers(0, LOG_SIZE - 1)),
        st.tuples(st.just("commit"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("rebalance"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@given(script=steps, committed=st.tuples(*[st.none() | st.integers(0, LOG_SIZE - 1)] * 2))
async def test_whatever_arrives_records_are_processed_in_order_and_commits_cover_exactly_what_was_processed(
    script: list[Step], committed: tuple[int | None, int | None]
) -> None:
    partitions = [partition(committed[0]), partition(committed[1])]
    generation = next(generations)
    with mock.patch.object(delivery, "time", FakeClock()):
        for kind, index, offset in script:
            part = partitions[index]
            if kind in ("arrive", "fail"):
                next_offset, seeks_before = part.first_unprocessed, len(pipeline.kafka.seeks)
                admitted = await pipeline.handle(part.tp, offset, generation, fails=kind == "fail")
                assert admitted == (offset == next_offset), f"{offset} admitted: {admitted}, next is {next_offset}"
                if admitted and kind == "arrive":
                    part.processed.append(offset)
                    part.processed_ever.add(offset)
                if offset > next_offset:
                    assert part.latest_seek(pipeline) == next_offset, f"the hole before {offset} was not rewound"
                else:
                    assert len(pipeline.kafka.seeks) == seeks_before, f"{offset} made a seek"
            elif kind == "commit":
                log = pipeline.kafka.logs[part.tp]
                before = log.committed
                pipeline.commit(part.tp)
                if log.committed != before:
                    assert log.committed is not None
                    assert set(range(before or 0, log.committed)) <= part.processed_ever, "committed unprocessed"
                assert log.committed == (part.first_unprocessed if part.processed else before), "processed uncommitted"
            else:
                generation = next(generations)
                for each in partitions:
                    each.start, each.processed = pipeline.reassign(each.tp), []

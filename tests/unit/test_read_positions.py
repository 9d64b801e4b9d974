"""Faust's read positions after a rewind: records fetched before the seek and still in flight must not move the
position past the rewind target, or Faust's fetch loop would drop the re-read records as already read."""

import pytest
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from core.topics import catalog_topic_name
from streams.delivery import ReadPositions
from tests.support.fakes import GuardedPipeline, guarded_pipeline

CATALOG = catalog_topic_name("unit")
TP0 = TP(CATALOG, 0)
TP1 = TP(CATALOG, 1)


@pytest.fixture
def pipeline() -> GuardedPipeline:
    built = guarded_pipeline({CATALOG})
    built.kafka.partition(TP0, end=100, committed=0)
    built.kafka.partition(TP1, end=100, committed=0)
    return built


def fetch_loop_hands_over(positions: ReadPositions, tp: TP, offset: int) -> bool:
    """Faust's fetch loop (transport/consumer.py, _drain_messages): a record below the read position is dropped;
    one handed to the agent becomes the read position."""
    read = positions[tp]
    if read is not None and offset < read:
        return False
    positions[tp] = offset
    return True


def positions_of(pipeline: GuardedPipeline) -> ReadPositions:
    positions = pipeline.consumer._read_offset
    assert isinstance(positions, ReadPositions)
    return positions


async def test_a_record_in_flight_cannot_move_the_position_past_a_rewind(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    positions[TP0] = 9

    await pipeline.consumer.rewind(TP0, 4)
    assert fetch_loop_hands_over(positions, TP0, 10)  # fetched before the seek

    assert positions[TP0] == 4
    assert pipeline.kafka.seeks == [(TP0, 4)]


async def test_the_rewind_target_coming_through_lets_the_position_advance_again(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    positions[TP0] = 9
    await pipeline.consumer.rewind(TP0, 4)

    assert fetch_loop_hands_over(positions, TP0, 4)
    assert fetch_loop_hands_over(positions, TP0, 5)

    assert positions[TP0] == 5
    assert positions.rewound_to == {}


async def test_a_rewind_holds_only_its_own_partition(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    await pipeline.consumer.rewind(TP0, 4)

    positions[TP1] = 30

    assert positions[TP1] == 30
    assert positions[TP0] == 4


async def test_a_lower_rewind_replaces_a_pending_one(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    await pipeline.consumer.rewind(TP0, 7)
    await pipeline.consumer.rewind(TP0, 3)

    positions[TP0] = 5
    assert positions[TP0] == 3


async def test_fausts_seek_to_committed_offsets_forgets_a_rewind(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    await pipeline.consumer.rewind(TP0, 4)

    positions.update({TP0: 20})  # Consumer.perform_seek after an assignment
    positions[TP0] = 21

    assert positions[TP0] == 21


async def test_a_revoked_partition_forgets_its_rewind(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    await pipeline.consumer.rewind(TP0, 4)

    assert positions.pop(TP0, None) == 4
    positions[TP0] = 12

    assert positions[TP0] == 12


def test_an_unread_partition_has_no_position() -> None:
    assert ReadPositions()[TP0] is None


async def test_when_the_target_itself_was_still_in_flight_every_record_reaches_the_agent_once_at_least(
    pipeline: GuardedPipeline,
) -> None:
    positions = positions_of(pipeline)
    fetch_loop_hands_over(positions, TP0, 4)
    await pipeline.consumer.rewind(TP0, 5)  # the watchdog: 5 was fetched but had not come through yet

    stale = [offset for offset in (5, 6) if fetch_loop_hands_over(positions, TP0, offset)]
    reread = [offset for offset in (5, 6, 7, 8) if fetch_loop_hands_over(positions, TP0, offset)]

    assert stale == [5, 6]
    assert reread == [6, 7, 8]  # 5 again is Faust's "already read"; the guard admits 6 again at most once


shared_pipeline = guarded_pipeline({CATALOG})  # building one per example would take most of the test's time
shared_pipeline.kafka.partition(TP0, end=100, committed=0)


@given(
    read_before=st.integers(min_value=0, max_value=30),
    back=st.integers(min_value=0, max_value=10),
    in_flight=st.lists(st.integers(min_value=1, max_value=40), max_size=12, unique=True).map(sorted),
    reread=st.integers(min_value=1, max_value=40),
)
async def test_after_a_rewind_every_re_read_record_reaches_the_agent(
    read_before: int, back: int, in_flight: list[int], reread: int
) -> None:
    """The guard rewinds to an offset it has not processed although the fetch loop has read past it (a hole).
    Records reach the fetch loop in the order they were fetched: those fetched before the seek (any records
    past the old read position, some possibly lost), then the log again from the rewind target."""
    pipeline = shared_pipeline
    positions = pipeline.consumer._read_offset = ReadPositions()
    fetch_loop_hands_over(positions, TP0, read_before)
    target = max(0, read_before - back)

    await pipeline.consumer.rewind(TP0, target)
    for offset in in_flight:
        fetch_loop_hands_over(positions, TP0, read_before + offset)
    handed_over = [offset for offset in range(target, target + reread) if fetch_loop_hands_over(positions, TP0, offset)]

    assert handed_over == list(range(target, target + reread))
    assert positions[TP0] == target + reread - 1

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


async def test_a_higher_rewind_replaces_a_pending_one_too(pipeline: GuardedPipeline) -> None:
    positions = positions_of(pipeline)
    await pipeline.consumer.rewind(TP0, 0)
    await pipeline.consumer.rewind(TP0, 1)  # an operator's replay, say, before record 0 came through

    stale = [offset for offset in (0, 2, 3) if fetch_loop_hands_over(positions, TP0, offset)]  # from the first seek
    reread = [offset for offset in (1, 2, 3) if fetch_loop_hands_over(positions, TP0, offset)]

    assert stale == [2, 3]  # 0 is dropped as already read; the guard turns 2 and 3 away
    assert reread == [1, 2, 3]


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
for tp in (TP0, TP1):
    shared_pipeline.kafka.partition(tp, end=100, committed=0)


@given(
    read_before=st.integers(min_value=0, max_value=30),
    back=st.integers(min_value=-1, max_value=10),
    in_flight=st.lists(st.integers(min_value=1, max_value=40), max_size=12, unique=True).map(sorted),
    reread=st.integers(min_value=1, max_value=40),
)
async def test_after_a_rewind_every_re_read_record_reaches_the_agent(
    read_before: int, back: int, in_flight: list[int], reread: int
) -> None:
    """The guard rewinds to an offset it has not processed: usually one the fetch loop has read past (a hole),
    or, from the watchdog, the very next one, fetched but still in flight. Records reach the fetch loop in the
    order they were fetched: those fetched before the seek (any records past the old read position, some
    possibly lost), then the log again from the rewind target. The agent, taking records in offset order from
    the target, gets every re-read record: from the re-read, or from the records in flight if the target itself
    was among them (then none lost after it: a hole there makes the guard rewind again)."""
    pipeline = shared_pipeline
    positions = pipeline.consumer._read_offset = ReadPositions()
    fetch_loop_hands_over(positions, TP0, read_before)
    target = max(0, read_before - back)
    if target > read_before:
        in_flight = list(range(1, len(in_flight) + 1))

    await pipeline.consumer.rewind(TP0, target)
    stale = [read_before + n for n in in_flight if fetch_loop_hands_over(positions, TP0, read_before + n)]
    handed_over = [offset for offset in range(target, target + reread) if fetch_loop_hands_over(positions, TP0, offset)]

    next_to_process = target  # the guard turns away anything else (and the rewind it asks for is this one)
    for offset in stale + handed_over:
        if offset == next_to_process:
            next_to_process += 1
    assert next_to_process >= target + reread
    last_read = target + reread - 1
    assert positions[TP0] == (last_read if target <= read_before else max([last_read, *stale]))


Op = tuple[str, int, int]  # (what, partition, offset)

ops = st.lists(
    st.tuples(
        st.sampled_from(["fetched", "fetched", "rewind", "seek", "revoke"]), st.integers(0, 1), st.integers(0, 20)
    ),
    max_size=30,
)


@given(script=ops)
async def test_a_rewind_holds_its_partition_at_the_target_until_the_target_comes_through_and_nothing_else(
    script: list[Op],
) -> None:
    """Any mix, on two partitions, of records the fetch loop hands over, rewinds, Faust's own seeks to committed
    offsets (after an assignment) and revocations."""
    pipeline = shared_pipeline
    positions = pipeline.consumer._read_offset = ReadPositions()
    tps = [TP0, TP1]
    held: dict[TP, int] = {}
    for what, index, offset in script:
        tp, other = tps[index], tps[1 - index]
        other_before = positions[other]
        read = positions[tp]
        if what == "fetched":
            handed_over = fetch_loop_hands_over(positions, tp, offset)
            if tp in held and handed_over and offset <= held[tp]:
                del held[tp]  # the target (or a record before it) came through
            elif tp not in held:
                assert handed_over == (read is None or offset >= read)
                assert positions[tp] == (offset if handed_over else read)
        elif what == "rewind":
            await pipeline.consumer.rewind(tp, offset)
            held[tp] = offset
        elif what == "seek":
            positions.update({tp: offset})
            held.pop(tp, None)
            assert positions[tp] == offset
        else:
            positions.pop(tp, None)
            held.pop(tp, None)
            assert positions[tp] is None
        if tp in held:
            assert positions[tp] == held[tp], f"held at {held[tp]}, read position {positions[tp]}"
        assert positions[other] == other_before

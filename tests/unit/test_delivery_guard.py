"""The delivery guard and the guarded consumer, on a fake partition log: events are admitted strictly in offset
order from the committed position, a hole rewinds to the first unprocessed offset, an ack counts only for a
processed event, and a commit never passes an offset that was not processed."""

import pytest
from faust.types import TP, Message
from hypothesis import given
from hypothesis import strategies as st

from core.topics import catalog_topic_name, dead_letter_topic_name
from streams import delivery
from streams.delivery import REWIND_DEBOUNCE_S, STALL_REWIND_AFTER_S, ReplayWouldSkip
from tests.support.fakes import FakeClock, GuardedPipeline, fake_event, fake_message, guarded_pipeline

CATALOG = catalog_topic_name("unit")
UNGUARDED = dead_letter_topic_name("unit")
TP0 = TP(CATALOG, 0)
TP1 = TP(CATALOG, 1)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(delivery, "time", fake)
    return fake


@pytest.fixture
def pipeline(clock: FakeClock) -> GuardedPipeline:
    return guarded_pipeline({CATALOG}, acking_topics={UNGUARDED})


# ---- admission ----


async def test_processing_starts_at_the_committed_offset(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=4)
    pipeline.consumer._committed_offset[TP0] = 4

    assert await pipeline.handle(TP0, 4)
    assert await pipeline.handle(TP0, 5)


async def test_the_committed_offset_is_asked_of_kafka_when_faust_has_not_read_it_yet(
    pipeline: GuardedPipeline,
) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=7)

    assert not await pipeline.handle(TP0, 6)
    assert await pipeline.handle(TP0, 7)


async def test_a_partition_never_committed_starts_at_its_earliest_retained_offset(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, earliest=3, end=10)

    assert await pipeline.handle(TP0, 3)
    assert pipeline.kafka.seeks == []


async def test_events_are_admitted_strictly_in_offset_order(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)

    admitted = [offset for offset in (0, 1, 2, 3) if await pipeline.handle(TP0, offset)]

    assert admitted == [0, 1, 2, 3]
    assert pipeline.kafka.seeks == []


async def test_an_event_already_processed_is_not_admitted_again_nor_rewound_to(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    for offset in (0, 1, 2):
        await pipeline.handle(TP0, offset)

    assert not await pipeline.handle(TP0, 1)
    assert pipeline.kafka.seeks == []
    assert await pipeline.handle(TP0, 3)


async def test_a_hole_rewinds_to_the_first_unprocessed_offset(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    await pipeline.handle(TP0, 0)
    await pipeline.handle(TP0, 1)

    assert not await pipeline.handle(TP0, 4)  # 2 and 3 never arrived

    assert pipeline.kafka.seeks == [(TP0, 2)]
    assert pipeline.consumer._read_offset[TP0] == 2
    assert pipeline.guard.rewinds == 1
    assert await pipeline.handle(TP0, 2)


async def test_partitions_are_guarded_independently(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    pipeline.kafka.partition(TP1, end=10, committed=5)

    assert await pipeline.handle(TP0, 0)
    assert await pipeline.handle(TP1, 5)
    assert not await pipeline.handle(TP1, 7)
    assert await pipeline.handle(TP0, 1)
    assert pipeline.kafka.seeks == [(TP1, 6)]


async def test_a_new_generation_starts_over_from_the_committed_offset(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    for offset in (0, 1, 2, 3):
        await pipeline.handle(TP0, offset, generation=1)
    assert pipeline.commit(TP0) == 4
    await pipeline.handle(TP0, 4, generation=1)
    await pipeline.handle(TP0, 5, generation=1)  # processed, never committed

    # After a rebalance the partition comes back at the committed offset: 4 and 5 are read again.
    assert not await pipeline.handle(TP0, 6, generation=2)
    assert pipeline.kafka.seeks == [(TP0, 4)]
    assert await pipeline.handle(TP0, 4, generation=2)


async def test_repeated_rewinds_to_one_offset_are_debounced(pipeline: GuardedPipeline, clock: FakeClock) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    await pipeline.handle(TP0, 0)

    # Records fetched before the seek keep arriving: each reveals the same hole, one seek is enough.
    for offset in (3, 4, 5):
        await pipeline.handle(TP0, offset)
    assert pipeline.kafka.seeks == [(TP0, 1)]

    clock.advance(REWIND_DEBOUNCE_S)
    await pipeline.handle(TP0, 6)
    assert pipeline.kafka.seeks == [(TP0, 1), (TP0, 1)]


async def test_a_rewind_to_another_offset_is_not_debounced(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    await pipeline.handle(TP0, 0)
    await pipeline.handle(TP0, 3)
    await pipeline.handle(TP0, 1)
    await pipeline.handle(TP0, 4)

    assert pipeline.kafka.seeks == [(TP0, 1), (TP0, 2)]


# ---- records processed in groups (streams.guarded_agent) ----


async def stage(pipeline: GuardedPipeline, tp: TP, *offsets: int) -> list[Message]:
    """Admit records into a group, as the agent does before writing them together."""
    staged = []
    for offset in offsets:
        message = fake_message(tp, offset)
        assert await pipeline.guard.admit(pipeline.app, fake_event(message)), offset
        pipeline.guard.staged(message)
        staged.append(message)
    return staged


async def test_a_group_is_admitted_in_order_and_committed_only_once_it_is_processed(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    group = await stage(pipeline, TP0, 0, 1, 2)

    assert not await pipeline.guard.admit(pipeline.app, fake_event(fake_message(TP0, 1)))  # no record twice
    for message in group[:2]:  # an ack before the group is written releases, never commits
        pipeline.consumer.ack(message)
    assert pipeline.commit(TP0) is None

    for message in group:
        pipeline.guard.processed(message)
        pipeline.consumer.ack(message)
    assert pipeline.commit(TP0) == 3


async def test_a_group_left_unwritten_is_read_again_from_its_first_record(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    await pipeline.handle(TP0, 0)
    group = await stage(pipeline, TP0, 1, 2, 3)

    pipeline.guard.unstaged(group)
    for message in group:
        pipeline.consumer.ack(message)

    assert not await pipeline.handle(TP0, 4)  # read ahead before the group failed
    assert pipeline.kafka.seeks == [(TP0, 1)]
    assert await pipeline.handle(TP0, 1)
    assert pipeline.commit(TP0) == 2


async def test_a_replay_reprocesses_from_the_requested_offset_even_right_after_a_rewind(
    pipeline: GuardedPipeline,
) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    for offset in (0, 1, 2):
        await pipeline.handle(TP0, offset)
    await pipeline.guard.rewind(pipeline.app, TP0, 3, "a test")

    await pipeline.guard.replay(pipeline.app, TP0, 3)
    await pipeline.guard.replay(pipeline.app, TP0, 1)

    assert pipeline.kafka.seeks == [(TP0, 3), (TP0, 3), (TP0, 1)]
    assert await pipeline.handle(TP0, 1)


async def test_a_replay_asked_for_right_after_a_rebalance_is_not_undone_by_the_first_record_that_follows(
    pipeline: GuardedPipeline,
) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    for offset in (0, 1, 2):
        await pipeline.handle(TP0, offset, generation=1)
    assert pipeline.commit(TP0) == 3

    pipeline.app.consumer_generation_id = 2  # a rebalance, and no record of the new generation yet
    await pipeline.guard.replay(pipeline.app, TP0, 0)

    assert await pipeline.handle(TP0, 0, generation=2)


async def test_a_replay_from_past_the_next_offset_to_process_is_refused(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=2)
    pipeline.consumer._committed_offset[TP0] = 2
    with pytest.raises(ReplayWouldSkip):
        await pipeline.guard.replay(pipeline.app, TP0, 3)  # no record of this generation yet: 2 is next
    await pipeline.handle(TP0, 2)

    with pytest.raises(ReplayWouldSkip):
        await pipeline.guard.replay(pipeline.app, TP0, 4)  # record 3 would be skipped, and commits stall at it

    assert pipeline.kafka.seeks == []
    await pipeline.guard.replay(pipeline.app, TP0, 3)  # from the next offset itself: nothing skipped
    assert await pipeline.handle(TP0, 3)


# ---- the stall watchdog ----


async def test_a_hole_at_the_end_of_a_partition_is_rewound_once_the_partition_sits_idle(
    pipeline: GuardedPipeline, clock: FakeClock
) -> None:
    pipeline.kafka.partition(TP0, end=5, committed=0)
    pipeline.recovery_completed.set()
    for offset in (0, 1, 2):
        await pipeline.handle(TP0, offset)  # 3 and 4 never arrive, and nothing after them reveals it

    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == []

    clock.advance(STALL_REWIND_AFTER_S)
    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == [(TP0, 3)]


async def test_records_waiting_behind_a_group_in_processing_are_not_taken_for_stalled(
    pipeline: GuardedPipeline, clock: FakeClock
) -> None:
    pipeline.kafka.partition(TP0, end=5, committed=0)
    pipeline.recovery_completed.set()
    await stage(pipeline, TP0, 0, 1)

    with pipeline.guard.working():  # writing the group takes long; 2..4 wait behind it
        clock.advance(2 * STALL_REWIND_AFTER_S)
        await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == []

    clock.advance(STALL_REWIND_AFTER_S)  # idle after it, and 2..4 never came
    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == [(TP0, 2)]


async def test_records_held_back_while_the_producer_catches_up_are_not_taken_for_stalled(
    pipeline: GuardedPipeline, clock: FakeClock
) -> None:
    pipeline.kafka.partition(TP0, end=5, committed=0)
    pipeline.recovery_completed.set()
    buffer = pipeline.app.producer.buffer
    for _ in range(buffer.max_messages + 1):  # changelog records not yet sent: Faust's conductor holds records back
        buffer.pending.put_nowait(object())

    clock.advance(2 * STALL_REWIND_AFTER_S)
    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == []

    while not buffer.pending.empty():  # it ebbed: the records flow again, the bound starts from here
        buffer.pending.get_nowait()
    clock.advance(STALL_REWIND_AFTER_S / 2)
    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == []

    clock.advance(STALL_REWIND_AFTER_S)  # and still none came
    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == [(TP0, 0)]


async def test_the_watchdog_waits_for_table_recovery(pipeline: GuardedPipeline, clock: FakeClock) -> None:
    pipeline.kafka.partition(TP0, end=5, committed=0)
    clock.advance(STALL_REWIND_AFTER_S)

    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == []

    pipeline.recovery_completed.set()
    await pipeline.guard.rewind_stalled(pipeline.app)
    assert pipeline.kafka.seeks == [(TP0, 0)]


async def test_the_watchdog_leaves_caught_up_partitions_alone(pipeline: GuardedPipeline, clock: FakeClock) -> None:
    pipeline.kafka.partition(TP0, end=2, committed=0)
    pipeline.recovery_completed.set()
    await pipeline.handle(TP0, 0)
    await pipeline.handle(TP0, 1)

    clock.advance(STALL_REWIND_AFTER_S)
    await pipeline.guard.rewind_stalled(pipeline.app)

    assert pipeline.kafka.seeks == []


async def test_positions_report_guarded_assigned_partitions_only(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    pipeline.kafka.partition(TP1, end=8, committed=6)
    pipeline.kafka.partition(TP(UNGUARDED, 0), end=50, committed=0)
    for offset in (0, 1, 2):
        await pipeline.handle(TP0, offset)

    assert await pipeline.guard.positions(pipeline.app) == {TP0: (3, 10), TP1: (6, 8)}


# ---- acks and commits ----


async def test_an_ack_of_an_unprocessed_event_releases_it_without_recording_it(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    skipped = fake_message(TP0, 0)
    pipeline.consumer._unacked_messages.add(skipped)

    assert not pipeline.consumer.ack(skipped)

    assert skipped.acked  # released: Faust will not wait for it
    assert skipped not in pipeline.consumer._unacked_messages
    assert pipeline.acked(TP0) == []
    assert pipeline.commit(TP0) is None


async def test_an_ack_of_a_processed_event_is_recorded_once(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=10, committed=0)
    await pipeline.handle(TP0, 0)

    assert not await pipeline.handle(TP0, 0)  # the same offset again, from a re-read

    assert pipeline.acked(TP0) == [0]


async def test_events_of_unguarded_topics_are_acked_as_faust_would(pipeline: GuardedPipeline) -> None:
    message = fake_message(TP(UNGUARDED, 0), 3)

    assert pipeline.consumer.ack(message)
    assert pipeline.acked(TP(UNGUARDED, 0)) == [3]


async def test_a_commit_covers_the_acked_run_that_starts_at_the_committed_offset(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=20, committed=5)
    pipeline.consumer._committed_offset[TP0] = 5
    for offset in (7, 5, 6, 9):  # 8 still in the agent's hands
        message = fake_message(TP0, offset)
        pipeline.guard.processed(message)
        pipeline.consumer.ack(message)

    assert pipeline.commit(TP0) == 8
    assert pipeline.acked(TP0) == [9]
    assert pipeline.commit(TP0) is None


async def test_nothing_is_committed_while_the_committed_offset_itself_is_unacked(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=20, committed=5)
    pipeline.consumer._committed_offset[TP0] = 5
    for offset in (6, 7):
        message = fake_message(TP0, offset)
        pipeline.guard.processed(message)
        pipeline.consumer.ack(message)

    assert pipeline.commit(TP0) is None
    assert pipeline.acked(TP0) == [6, 7]


async def test_a_jump_in_offsets_is_never_filled_as_a_gap(pipeline: GuardedPipeline) -> None:
    pipeline.kafka.partition(TP0, end=20, committed=0)
    pipeline.consumer._committed_offset[TP0] = 0
    for offset in (0, 1, 2, 6):
        message = fake_message(TP0, offset)
        pipeline.guard.processed(message)
        pipeline.consumer.ack(message)

    await pipeline.consumer._add_gap(TP0, 3, 6)

    assert not pipeline.consumer._gap[TP0]  # what Faust's own commit path would count as acked
    assert pipeline.commit(TP0) == 3
    assert pipeline.commit(TP0) is None


commit_pipeline = guarded_pipeline({CATALOG})  # one for all examples: each example takes a partition of its own
partitions = iter(range(1_000_000))


@given(
    committed=st.integers(min_value=0, max_value=20),
    processed=st.sets(st.integers(min_value=0, max_value=40), max_size=30),
)
def test_a_commit_moves_exactly_over_the_processed_run_from_the_committed_offset(
    committed: int, processed: set[int]
) -> None:
    tp = TP(CATALOG, next(partitions))
    commit_pipeline.kafka.partition(tp, end=50, committed=committed)
    commit_pipeline.consumer._committed_offset[tp] = committed
    for offset in sorted(processed, key=lambda o: (o * 7919) % 41):  # acked in no particular order
        message = fake_message(tp, offset)
        commit_pipeline.guard.processed(message)
        commit_pipeline.consumer.ack(message)

    new_offset = commit_pipeline.commit(tp)

    run = committed
    while run in processed:
        run += 1
    assert new_offset == (run if run > committed else None)

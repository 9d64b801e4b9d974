"""The handover's pure parts (streams.handover_state, models.handover): which lanes a worker writes for as the
markers pass, refusal and taking back, and the records it sends."""

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.catalog import apply_batch
from models.errors import InvalidEvent
from models.events import decode_batch
from models.handover import (
    PLACEHOLDER_CENTS,
    PROBE_CITY,
    PROBE_ITEM,
    PROBE_PRICES,
    HandoverMarker,
    decode_marker,
    next_probe_price,
    probe_batches,
)
from streams.handover_state import HELD_BACK_MAX, AtMarker, Handover, HeldBack, Phase
from streams.state import CatalogTables

CATALOG, ORDERS = "ns.catalog-events", "ns.order-commands"
LANES = frozenset({(CATALOG, 0), (CATALOG, 1), (ORDERS, 0), (ORDERS, 1)})
NOW = "2026-11-30T20:00:00.000000Z"


def test_a_marker_round_trips_and_other_records_are_no_markers() -> None:
    marker = HandoverMarker(3, "ns-catalog-worker-1-g2", NOW)
    assert decode_marker(marker.encode()) == marker
    assert decode_marker(b'{"batch_id":"x","city":"blr","events":[]}') is None
    assert decode_marker(None) is None


@pytest.mark.parametrize(
    "raw",
    [
        b'{"control":"worker.handover","epoch":0,"group":"g"}',
        b'{"control":"worker.handover","epoch":true,"group":"g"}',
        b'{"control":"worker.handover","epoch":2}',
        b'{"control":"worker.handover",',
    ],
)
def test_a_broken_marker_is_an_invalid_record(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_marker(raw)


def test_a_successor_takes_each_lane_at_its_own_marker_and_projects_once_it_holds_all() -> None:
    successor = Handover("ns-catalog-g2", LANES)
    successor.enter(Phase.TAKING_OVER, "markers sent")
    marker = HandoverMarker(2, "ns-catalog-g2", NOW)
    for lane in sorted(LANES):
        assert not successor.projects(lane)
        assert successor.at_marker(lane, marker) is AtMarker.TAKE
        successor.took(lane)
        assert successor.projects(lane)
    assert successor.phase is Phase.PROJECTING and successor.epoch == 2
    assert successor.ready() == (True, "ready")


def test_a_predecessor_releases_each_lane_at_a_newer_marker_and_retires() -> None:
    predecessor = Handover.holding("ns-catalog", LANES, epoch=1)
    marker = HandoverMarker(2, "ns-catalog-g2", NOW)
    lanes = sorted(LANES)
    for lane in lanes[:-1]:
        assert predecessor.at_marker(lane, marker) is AtMarker.RELEASE
        assert not predecessor.projects(lane)
    assert predecessor.ready()[0] and predecessor.projects(lanes[-1])  # still writes the last lane
    assert predecessor.at_marker(lanes[-1], marker) is AtMarker.RELEASE
    assert predecessor.phase is Phase.RETIRED and not predecessor.ready()[0]
    # The same marker read again, or an older generation's, changes nothing.
    assert predecessor.at_marker(lanes[0], marker) is AtMarker.NOTHING
    assert predecessor.at_marker(lanes[0], HandoverMarker(1, "ns-catalog-g0", NOW)) is AtMarker.NOTHING


def test_markers_of_older_epochs_and_other_generations_leave_a_successor_in_standby() -> None:
    successor = Handover("ns-catalog-g3", LANES)
    successor.enter(Phase.CATCHING_UP, "replaying")
    for marker in (HandoverMarker(1, "ns-catalog", NOW), HandoverMarker(2, "ns-catalog-g2", NOW)):
        assert successor.at_marker((CATALOG, 0), marker) is AtMarker.NOTHING  # history, replayed
    assert not successor.projecting and successor.phase is Phase.CATCHING_UP
    successor.epoch = 4
    assert successor.at_marker((CATALOG, 0), HandoverMarker(3, "ns-catalog-g3", NOW)) is AtMarker.NOTHING


def test_a_fenced_lane_is_dropped_and_a_refused_worker_writes_nothing() -> None:
    worker = Handover.holding("ns-catalog", LANES)
    worker.fenced((CATALOG, 0), "blr is held under a newer epoch")
    assert not worker.projects((CATALOG, 0)) and worker.projects((CATALOG, 1))
    worker.refuse("diverges")
    assert not worker.projecting and worker.ready() == (False, "handover refused: diverges")


def test_only_a_worker_that_released_lanes_takes_the_log_back_and_waits_for_its_successor_to_let_go() -> None:
    worker = Handover.holding("ns-catalog", LANES)
    assert not worker.take_back()
    for lane in LANES:
        worker.at_marker(lane, HandoverMarker(2, "ns-catalog-g2", NOW))
    assert worker.phase is Phase.RETIRED
    assert worker.take_back()
    assert worker.ready() == (False, "handover starting: taking the log back")
    assert worker.predecessor == "ns-catalog-g2"  # the released lanes are taken back once g2 lets go of them


def test_a_worker_released_part_way_takes_back_what_it_released_and_keeps_writing_the_rest() -> None:
    """The successor failed while taking over: it put markers on some lanes only."""
    worker = Handover.holding("ns-catalog", LANES, epoch=1)
    lanes = sorted(LANES)
    worker.at_marker(lanes[0], HandoverMarker(2, "ns-catalog-g2", NOW))
    assert worker.phase is Phase.PROJECTING and worker.released == {lanes[0]}
    assert worker.take_back()
    assert all(worker.projects(lane) for lane in lanes[1:])  # no pause on lanes it never released
    worker.epoch = 3
    for lane in lanes:
        assert worker.at_marker(lane, HandoverMarker(3, "ns-catalog", NOW)) is AtMarker.TAKE
        worker.took(lane)
    assert worker.phase is Phase.PROJECTING and not worker.released and worker.projecting == set(LANES)


def test_a_successor_that_read_every_marker_before_it_finished_putting_them_projects() -> None:
    successor = Handover("ns-catalog-g2", LANES, predecessor="ns-catalog-g1")
    successor.enter(Phase.TAKING_OVER, "putting markers on every lane")
    marker = HandoverMarker(2, "ns-catalog-g2", NOW)
    for lane in sorted(LANES):  # the agents read the markers while the holder was still being named
        assert successor.at_marker(lane, marker) is AtMarker.TAKE
        successor.took(lane)

    successor.markers_put(2)
    successor.waiting_for_markers()  # the next step of the handover loop

    assert successor.phase is Phase.PROJECTING and successor.ready() == (True, "ready")


def test_a_successor_taking_over_says_which_lanes_it_has_not_read_its_marker_on_yet() -> None:
    successor = Handover("ns-catalog-g2", LANES)
    successor.enter(Phase.TAKING_OVER, "putting markers on every lane")
    successor.markers_epoch = 2
    marker = HandoverMarker(2, "ns-catalog-g2", NOW)
    successor.at_marker((CATALOG, 0), marker)
    successor.took((CATALOG, 0))
    successor.waiting_for_markers()
    reason = successor.ready()[1]
    assert "ns.catalog-events:1" in reason and "ns.catalog-events:0" not in reason, reason


def test_a_catch_up_is_overdue_only_once_it_stops_making_progress_and_a_proof_after_its_bound() -> None:
    now = [0.0]
    worker = Handover("g", LANES, clock=lambda: now[0])
    now[0] = 100.0
    assert not worker.proof_overdue(50)  # starting: the driver has not looked yet
    worker.enter(Phase.CATCHING_UP, "replaying")
    for lag in (9000, 6000, 3000):  # a long log, read steadily: never overdue
        now[0] += 40
        worker.caught_up_to(lag)
        assert not worker.proof_overdue(50)
    now[0] += 40
    worker.caught_up_to(3000)  # no progress for 40 s, then for 80 s
    assert not worker.proof_overdue(50)
    now[0] += 40
    worker.caught_up_to(3100)
    assert worker.proof_overdue(50)
    worker.enter(Phase.PROVING, "probe sent")  # a proof has its own bound from when it begins
    assert not worker.proof_overdue(50)
    now[0] += 60
    assert worker.proof_overdue(50) and not worker.proof_overdue(150)


def test_a_worker_without_lanes_is_ready_at_once() -> None:
    assert Handover("ns-shadow-x", frozenset()).ready() == (True, "ready")


@given(st.one_of(st.none(), st.sampled_from(PROBE_PRICES)), st.integers(min_value=0, max_value=1 << 30))
def test_a_probe_price_always_differs_from_the_last_and_the_placeholder(previous: int | None, seed: int) -> None:
    price = next_probe_price(previous, seed)
    assert price in PROBE_PRICES and price != previous and price != PLACEHOLDER_CENTS


def test_the_probe_records_set_the_probe_items_price_when_applied_in_order() -> None:
    setup, change = probe_batches(4321, "system:handover:test", NOW)
    tables = CatalogTables({}, {}, {})
    for position, batch in enumerate((setup, change)):
        decoded = decode_batch(batch.encode())
        outcome = apply_batch(tables.view(PROBE_CITY.code), decoded, position, PROBE_CITY.currency)
        assert not outcome.rejected
        tables.persist(PROBE_CITY.code, outcome)
    item = tables.view(PROBE_CITY.code).item(PROBE_ITEM)
    assert item is not None and (item.price_cents, item.base_price_cents) == (4321, 4321)
    assert orjson.loads(change.encode())["events"][0]["type"] == "price.set"


def test_a_read_model_standing_still_behind_the_worker_counts_as_stalled_only_after_a_while() -> None:
    now = [0.0]
    worker = Handover("g", LANES, clock=lambda: now[0])
    assert not worker.read_model_stalled("blr", 100, 120, after_s=5)
    now[0] = 4.0
    assert not worker.read_model_stalled("blr", 100, 125, after_s=5)
    now[0] = 5.5
    assert worker.read_model_stalled("blr", 100, 130, after_s=5)  # nobody wrote the city for 5 s
    assert not worker.read_model_stalled("blr", 131, 131, after_s=5)  # it moved (and caught up): start over
    now[0] = 20.0
    assert not worker.read_model_stalled("blr", 131, 131, after_s=5)  # level with this worker: comparable


def test_a_released_lane_is_remembered_and_held_back_changes_come_out_in_order_after_a_position() -> None:
    worker = Handover.holding("ns-catalog", LANES)
    worker.at_marker((CATALOG, 0), HandoverMarker(2, "ns-catalog-g2", NOW))
    assert worker.released == {(CATALOG, 0)}
    held = HeldBack()
    for position in (10, 12, 15):
        held.hold("blr", position, f"batch-{position}", f"outcome-{position}")
    assert held.after("blr", 11) == [(12, "batch-12", "outcome-12"), (15, "batch-15", "outcome-15")]
    assert held.after("blr", None) is None  # the read model has nothing: only a whole city will do
    assert held.after("mum", 3) == []


def test_held_back_changes_that_overflowed_are_not_offered() -> None:
    held = HeldBack()
    for position in range(HELD_BACK_MAX + 1):
        held.hold("blr", position, None, None)
    assert held.after("blr", 5) is None

"""The handover's state in one worker: its phase and the lanes it writes for (streams.handover drives it)."""

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.handover import HandoverMarker
from models.shadow import Comparison
from streams.metrics import HANDOVER_EPOCH, HANDOVER_LANES, HANDOVER_PHASE

logger = logging.getLogger(__name__)

Lane = tuple[str, int]  # (topic, partition)
READ_MODEL_STALLED_S = 5.0  # a read model behind this worker and still for this long has nobody writing it


class Phase(enum.StrEnum):
    STARTING = "starting"
    CATCHING_UP = "catching up"
    PROVING = "proving"
    TAKING_OVER = "taking over"
    PROJECTING = "projecting"
    RETIRED = "retired"
    REFUSED = "refused"


class AtMarker(enum.Enum):
    NOTHING = "nothing"  # another generation's marker this worker has no part in
    TAKE = "take"  # this worker's own marker: it starts writing for the lane after it
    RELEASE = "release"  # a newer generation's marker on a lane this worker wrote for: it stops here


def lane_name(lane: Lane) -> str:
    return f"{lane[0]}:{lane[1]}"


@dataclass
class Handover:
    """Which lanes this worker writes for, and its phase: the pure state the agents and the driver share."""

    group: str
    lanes: frozenset[Lane]
    clock: Callable[[], float] = time.monotonic
    phase: Phase = Phase.STARTING
    epoch: int = 0
    detail: str = ""
    projecting: set[Lane] = field(default_factory=set)
    started_at: float = field(default=0.0)  # when the current phase began, or catching up last made progress
    least_lag: int | None = None
    predecessor: str | None = None  # the group holding the log when this worker started, if any
    release_deadline: float | None = None
    probe_price: int | None = None
    probe_batch_id: str = ""
    compared: dict[str, Comparison] = field(default_factory=dict)
    read_model_seen: dict[str, tuple[int, float]] = field(default_factory=dict)  # city: (position, since)
    released: set[Lane] = field(default_factory=set)  # lanes this worker wrote for until a newer generation's marker
    successor: str | None = None  # the group this worker released lanes to
    markers_epoch: int | None = None  # taking over: every marker of this epoch is on the log

    def __post_init__(self) -> None:
        self.started_at = self.clock()
        # Set once this worker knows whether its generation holds the log: until then no record may be taken
        # as someone else's (a restarted holder would apply it to its tables only and lose it for customers).
        self.decided = asyncio.Event()
        if not self.lanes:
            self.decided.set()

    @classmethod
    def holding(cls, group: str, lanes: frozenset[Lane], epoch: int = 1) -> "Handover":
        """A worker whose generation holds the log already (tests start one this way)."""
        handover = cls(group, lanes)
        handover.resume(epoch)
        return handover

    def resume(self, epoch: int) -> None:
        """This worker's group holds the log already (a restart): write for every lane."""
        self.epoch = epoch
        self.projecting = set(self.lanes)
        self._enter(Phase.PROJECTING, f"resumed as the holder at epoch {epoch}")

    def projects(self, lane: Lane) -> bool:
        return lane in self.projecting

    def at_marker(self, lane: Lane, marker: HandoverMarker) -> AtMarker:
        if marker.group == self.group:
            if marker.epoch < self.epoch or lane not in self.lanes:
                return AtMarker.NOTHING  # an older marker of this group, read again
            self.epoch = marker.epoch
            return AtMarker.TAKE
        if marker.epoch > self.epoch and lane in self.projecting:
            self.released.add(lane)
            self.successor = marker.group
            self._drop(lane, f"handed over to {marker.group} at epoch {marker.epoch}")
            return AtMarker.RELEASE
        return AtMarker.NOTHING

    def took(self, lane: Lane) -> None:
        self.projecting.add(lane)
        self.released.discard(lane)
        self._project_if_holding_every_lane()

    def fenced(self, lane: Lane, why: str) -> None:
        """Redis refused a write of this worker's epoch: a newer generation holds the lane."""
        if lane in self.projecting:
            self._drop(lane, why)

    def markers_put(self, epoch: int) -> None:
        """Every marker of `epoch` is on the log. The agents read on while the markers go out and the holder is
        named, and may have taken every lane already: the worker then projects (re-entering "taking over" here
        left it waiting for markers it had read, until the rollout's watchdog gave up on it)."""
        self.markers_epoch = epoch
        self.waiting_for_markers()

    def waiting_for_markers(self) -> None:
        """Taking over, markers on the log: which lanes this worker has yet to read its marker on."""
        if self._project_if_holding_every_lane():
            return
        waiting = sorted(lane_name(lane) for lane in self.lanes - self.projecting)
        self._enter(Phase.TAKING_OVER, f"markers of epoch {self.markers_epoch} on the log; not read yet on {waiting}")

    def _project_if_holding_every_lane(self) -> bool:
        if not self.projecting >= self.lanes:
            return False
        self._enter(Phase.PROJECTING, f"holds every lane at epoch {self.epoch}")
        return True

    def take_back(self) -> bool:
        """A worker that released lanes (retired, or part-way: its successor failed while taking over; its tables
        kept following the log) goes through proof and takeover again."""
        if not self.released or self.phase not in (Phase.RETIRED, Phase.PROJECTING):
            return False
        self.least_lag = None
        self.compared.clear()
        self.read_model_seen.clear()
        self.probe_price, self.probe_batch_id = None, ""
        self.predecessor = self.successor  # it lets go of the lanes it took at this worker's markers
        self._enter(Phase.STARTING, "taking the log back")
        return True

    def refuse(self, reason: str) -> None:
        self.projecting.clear()
        self._enter(Phase.REFUSED, reason)

    def read_model_stalled(self, city: str, stable: int, mine: int, after_s: float = READ_MODEL_STALLED_S) -> bool:
        """True once the read model has stood still at `stable`, behind this worker's `mine`, for `after_s`."""
        seen = self.read_model_seen.get(city)
        now = self.clock()
        if seen is None or seen[0] != stable or mine <= stable:
            self.read_model_seen[city] = (stable, now)
            return False
        return now - seen[1] >= after_s

    def caught_up_to(self, lag: int) -> None:
        """Catching up is progress as long as the lag keeps shrinking, however long the log."""
        if self.least_lag is None or lag < self.least_lag:
            self.least_lag = lag
            self.started_at = self.clock()

    def proof_overdue(self, timeout_s: float) -> bool:
        """Stuck: no progress catching up for `timeout_s`, or not proven `timeout_s` after catching up."""
        return self.phase in (Phase.CATCHING_UP, Phase.PROVING) and self.clock() - self.started_at > timeout_s

    def ready(self) -> tuple[bool, str]:
        if not self.lanes or self.phase is Phase.PROJECTING:
            return True, "ready"
        return False, f"handover {self.phase.value}: {self.detail}"

    def _drop(self, lane: Lane, why: str) -> None:
        self.projecting.discard(lane)
        if not self.projecting:
            self._enter(Phase.RETIRED, why)

    def _enter(self, phase: Phase, detail: str) -> None:
        if phase is not self.phase:
            logger.info("handover: %s (%s)", phase.value, detail)
            self.started_at = self.clock()
        if phase is not Phase.STARTING:
            self.decided.set()
            HANDOVER_PHASE.state(phase.name.lower())
        self.phase, self.detail = phase, detail
        HANDOVER_EPOCH.set(self.epoch)
        HANDOVER_LANES.set(len(self.projecting))

    def enter(self, phase: Phase, detail: str) -> None:
        self._enter(phase, detail)


HELD_BACK_MAX = 10_000  # per city: beyond this a taken-back city is written whole


@dataclass
class HeldBack:
    """What a worker applied after releasing a lane, kept so that, should it take the lane back (its successor
    failed after taking over), it can project exactly what the successor never did, change by change."""

    entries: dict[str, deque[tuple[int, Any, Any]]] = field(default_factory=dict)  # city: (position, batch, outcome)
    overflowed: set[str] = field(default_factory=set)

    def hold(self, city: str, position: int, batch: Any, outcome: Any) -> None:
        held = self.entries.setdefault(city, deque(maxlen=HELD_BACK_MAX))
        if len(held) == HELD_BACK_MAX:
            self.overflowed.add(city)
        held.append((position, batch, outcome))

    def after(self, city: str, position: int | None) -> list[tuple[int, Any, Any]] | None:
        """Every held change of the city after `position`, oldest first; None when some may be missing."""
        if position is None or city in self.overflowed:
            return None
        return [entry for entry in self.entries.get(city, ()) if entry[0] > position]

    def clear(self) -> None:
        self.entries.clear()
        self.overflowed.clear()

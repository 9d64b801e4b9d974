"""What the worker knows of its own health, for its readiness and liveness pages and their gauges.

Readiness (should traffic count on this worker now?) is false while any write is being retried because a
dependency is unreachable: the worker is waiting, not applying changes.

Liveness (should it be restarted?) is false once one record has been in processing, retries included, for
longer than a bound (FEASTFLOW_STUCK_AFTER_S): its partition is stuck. Retrying a dependency outage for a
few seconds is normal; being stuck on one record for minutes is not, and a fresh process (new connections,
a new consumer) is the cheapest cure a supervisor can apply.
"""

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class WorkerHealth:
    stuck_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _retrying: dict[int, str] = field(default_factory=dict)
    _in_progress: dict[str, tuple[str, float]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _degraded: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def retrying(self, what: str) -> Iterator[None]:
        """Marks a retry in progress for as long as the block runs."""
        token = next(self._ids)
        self._retrying[token] = what
        try:
            yield
        finally:
            del self._retrying[token]

    @contextmanager
    def processing(self, lane: str, record: str) -> Iterator[None]:
        """Marks one record in processing on a lane (an agent's partition) for as long as the block runs."""
        self._in_progress[lane] = (record, self.clock())
        try:
            yield
        finally:
            self._in_progress.pop(lane, None)

    def degraded(self, task: str, reason: str) -> None:
        """A background task (a timer) failed for a dependency; it stays degraded until it runs cleanly."""
        self._degraded[task] = reason

    def recovered(self, task: str) -> None:
        self._degraded.pop(task, None)

    def retries(self) -> list[str]:
        """What is waiting for a dependency now: writes being retried, timers failing."""
        return sorted(set(self._retrying.values()) | {f"{task} ({why})" for task, why in self._degraded.items()})

    def oldest_record_age(self) -> float:
        """Seconds the longest-running record has been in processing; 0 when none is."""
        now = self.clock()
        return max((now - started for _, started in self._in_progress.values()), default=0.0)

    def stuck(self) -> list[str]:
        """The records in processing for longer than the bound, as `lane record age`."""
        now = self.clock()
        return [
            f"{lane} {record} for {now - started:.0f}s"
            for lane, (record, started) in sorted(self._in_progress.items())
            if now - started > self.stuck_after_s
        ]

    def live(self) -> tuple[bool, str]:
        stuck = self.stuck()
        if stuck:
            return False, "stuck: " + "; ".join(stuck)
        return True, "alive"

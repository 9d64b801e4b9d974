"""Shadow pricing: a candidate version applies the catalog log to its own tables, in its own consumer group,
and is compared with the stable version's read model — writing nothing customers see.

Every few seconds, for each city where the candidate and the stable read model stand at the same log
position, every item's effective price is compared (models.shadow.compare_city, with the expected changes
declared up front in FEASTFLOW_SHADOW_EXPECT). The results are Prometheus gauges the canary analysis reads:
items compared and diverged, the worst divergence, cities not comparable yet, the candidate's lag, and its
errors (records it could not apply).
"""

import asyncio
import logging
import math
import os
import signal

import orjson

from core.redis_keys import city_keys
from models.shadow import Comparison, ExpectedChange, compare_city, parse_expected_changes
from streams.app import Worker, pod_track
from streams.gauges import partition_lag
from streams.metrics import (
    SHADOW_CITIES_PENDING,
    SHADOW_ITEMS_COMPARED,
    SHADOW_ITEMS_DIVERGED,
    SHADOW_LAG,
    SHADOW_MAX_DIVERGENCE,
)
from streams.timers import worker_timer

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 2.0
SAME_POSITION_ATTEMPTS = 5  # under load both sides move; look again briefly for a moment they agree


def register_shadow_comparison(worker: Worker) -> None:
    changes = parse_expected_changes(worker.settings.shadow_expect)
    logger.info("shadow comparison with expected changes %s", changes)
    SHADOW_LAG.set(math.nan)  # unknown until every partition has been fetched, not zero

    @worker_timer(worker, SWEEP_EVERY_S)
    async def compare_with_stable() -> None:
        lag = await partition_lag(worker)
        if len(lag) == worker.settings.partitions:  # until every partition is fetched, lag is unknown
            SHADOW_LAG.set(sum(lag.values()))
        total, pending = Comparison(), 0
        for city in worker.settings.city_codes:
            comparison = await _compare_city(worker, city, changes)
            if comparison is None:
                pending += 1
            else:
                total.add(comparison)
        SHADOW_ITEMS_COMPARED.set(total.compared)
        SHADOW_ITEMS_DIVERGED.set(total.diverged)
        SHADOW_MAX_DIVERGENCE.set(total.max_divergence_ratio)
        SHADOW_CITIES_PENDING.set(pending)
        if total.diverged:
            logger.warning("candidate diverges on %d of %d items: %s", total.diverged, total.compared, total.examples)


async def _compare_city(worker: Worker, city: str, changes: tuple[ExpectedChange, ...]) -> Comparison | None:
    """None while the two sides stand at different positions of the city's log."""
    keys = city_keys(worker.settings.namespace, city)
    for _ in range(SAME_POSITION_ATTEMPTS):
        # One transaction: the projection writes a batch atomically, so position and items agree.
        async with worker.resources.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.meta, "position")
            pipe.hvals(keys.items)
            stable_position, items = await pipe.execute()
        # No await from here on: the candidate's position and tables are read as of one moment.
        mine = worker.applied_positions.get(city)
        if stable_position is not None and mine == int(stable_position):
            candidate = {i.item_id: i.price_cents for i in worker.tables.view(city).items() if not i.removed}
            return compare_city(city, candidate, (orjson.loads(raw) for raw in items), changes)
        await asyncio.sleep(0.05)
    return None


def register_track_watch(worker: Worker) -> None:
    """An Argo Rollouts pod changes track on promotion (shadow -> stable): stop cleanly so the container starts
    again in its new role (Faust commits and leaves the group on SIGTERM)."""
    started_as = pod_track(worker.settings.track_file)

    @worker_timer(worker, 5.0)
    async def follow_track() -> None:
        now = pod_track(worker.settings.track_file)
        if now and now != started_as:
            logger.warning("pod track changed from %r to %r: restarting in the new role", started_as, now)
            os.kill(os.getpid(), signal.SIGTERM)

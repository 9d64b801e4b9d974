"""Worker generations hand projecting over at an exact log position, without a consumer-group rebalance.

A worker generation (FEASTFLOW_WORKER_GENERATION; a rollout gives each successor its own) consumes in a
consumer group of its own, so starting or stopping it never moves a partition of the generation customers
depend on. Every worker goes through these phases (`Phase`):

    starting -> catching up -> proving -> taking over -> projecting -> retired
                                  \\-> refused (never projects)

- **starting**: if Redis names this worker's group as its service's holder (`{ns}:handover:{service}:holder`),
  this is a restart of the generation that projects now: it resumes projecting every lane at once.
- **catching up**: otherwise it is a successor. It applies the log to its own tables, writing nothing anyone
  reads, until its tables are recovered and its lag is 0 on every partition.
- **proving**: it must show it is right, not only alive: (1) its prices equal the stable read model's in every
  city, where both stand at the same log position, apart from the changes its release declares
  (FEASTFLOW_SHADOW_EXPECT, as the pricing shadow); (2) a probe price change (models.handover) it sends itself
  comes back from the log applied with the price it set. A successor that diverges, fails the probe or is not
  proven within FEASTFLOW_HANDOVER_PROOF_TIMEOUT_S is **refused**: it never writes, stays not ready, and says
  why on its readiness page.
- **taking over**: it takes the next fencing epoch (INCR `{ns}:handover:epoch`), names its group the holder, and
  puts a marker `{epoch, group}` on every partition it writes for (its lanes). Each worker reads each marker in
  log order, so on each lane one position separates the two generations:
  - the predecessor stops writing for the lane at the marker and records where (`released`);
  - the successor starts with the record after the marker, once the predecessor has released the lane (it
    waits at most FEASTFLOW_HANDOVER_RELEASE_TIMEOUT_S for a predecessor that died or predates markers; a city
    the read model then holds behind the successor's tables is written whole).
- **projecting**: ready. Every projection write carries the epoch, and Redis refuses one of an older epoch
  (streams.projection), so a predecessor that somehow writes on is fenced off.
- **retired**: a predecessor past every marker writes nothing more and reports not ready until it is stopped.

No worker joins or leaves a group customers depend on, so no partition stops for a rebalance; the successor was
following the log live, so a change's latency is its ordinary processing time. Orders need no more: a decision
is stored once per order id (first decision wins), so an overlap could never decide an order twice.

One member per generation takes over (the local stack and the chart run one pod per worker service). A
service of several pods shares its lanes between members, which this does not coordinate yet: it runs with
FEASTFLOW_WORKER_HANDOVER=0 (every worker writes at once, and a roll rebalances, as before the handover).
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial

import orjson

from core.redis_keys import city_keys, handover_keys
from models.events import utc_now
from models.handover import PROBE_CITY, PROBE_ITEM, HandoverMarker, next_probe_price, probe_batches
from models.shadow import Comparison, ExpectedChange, compare_city, parse_expected_changes
from streams.app import Worker, consumed_topics
from streams.delivery import recovery_completed
from streams.gauges import partition_lag
from streams.handover_state import AtMarker, Lane, Phase, lane_name
from streams.metrics import HANDOVERS
from streams.projection import CitySnapshot
from streams.timers import worker_timer

logger = logging.getLogger(__name__)

STEP_EVERY_S = 0.5
SAME_POSITION_ATTEMPTS = 5  # under load both sides move; look again for a moment they agree


CatchUp = Callable[[Worker, int], Awaitable[None]]


async def at_marker(
    worker: Worker, lane: Lane, marker: HandoverMarker, offset: int, catch_up: CatchUp | None = None
) -> None:
    """What an agent does with a marker record it reads on `lane` (one record: acked like any other).
    `catch_up(worker, partition)` brings the read model level with this worker's tables before it takes a lane."""
    handover = worker.handover
    action = handover.at_marker(lane, marker)
    redis = worker.resources.redis
    keys = handover_keys(worker.settings.namespace, worker.service.value)
    if action is AtMarker.RELEASE:
        await worker.retry("releasing a lane", lambda: redis.hset(keys.released(marker.epoch), lane_name(lane), offset))
        HANDOVERS.labels("released").inc()
        logger.info("released %s at offset %d to %s (epoch %d)", lane_name(lane), offset, marker.group, marker.epoch)
    elif action is AtMarker.TAKE:
        if handover.projects(lane):  # taking the log back: a lane it never released
            waited = "held it already"
        else:
            waited = await _wait_released(worker, lane, marker.epoch)
            if catch_up is not None:
                await catch_up(worker, lane[1])
        handover.took(lane)
        if handover.phase is Phase.PROJECTING:
            worker.held_back.clear()
        HANDOVERS.labels("taken").inc()
        logger.info("took %s at offset %d (epoch %d; %s)", lane_name(lane), offset, marker.epoch, waited)


async def _wait_released(worker: Worker, lane: Lane, epoch: int) -> str:
    deadline = worker.handover.release_deadline
    if deadline is None:
        return "no predecessor to wait for"
    redis = worker.resources.redis
    key = handover_keys(worker.settings.namespace, worker.service.value).released(epoch)
    while True:
        if await worker.retry("reading a release", lambda: redis.hexists(key, lane_name(lane))):
            return "released by the predecessor"
        if worker.handover.clock() > deadline:
            return "the predecessor never released it"
        await asyncio.sleep(0.01)


async def write_city_whole(worker: Worker, city: str, position: int) -> None:
    view = worker.tables.view(city)
    snapshot = CitySnapshot(
        restaurants=sorted(view.restaurants(), key=lambda r: r.restaurant_id),
        items=sorted(view.items(), key=lambda i: i.item_id),
        pricing=view.pricing(),
    )
    served = worker.settings.city(city)
    currency = served.currency if served else PROBE_CITY.currency
    await worker.retry(
        "writing a city whole", lambda: worker.projection.replace(city, currency, position, snapshot, ())
    )


def register_handover(worker: Worker) -> None:
    """The driver: one step every half second until this worker projects, retires or is refused."""
    handover = worker.handover
    if not handover.lanes or not worker.settings.worker_handover:
        return
    changes = parse_expected_changes(worker.settings.shadow_expect)
    settings = worker.settings
    redis = worker.resources.redis
    keys = handover_keys(settings.namespace, worker.service.value)

    @worker_timer(worker, STEP_EVERY_S)
    async def hand_over() -> None:
        if handover.phase in (Phase.STARTING, Phase.CATCHING_UP, Phase.PROVING):
            holder = {_text(k): _text(v) for k, v in (await redis.hgetall(keys.holder)).items()}
            # A restart, or another member of this generation took it. Not a worker taking the log back after
            # releasing lanes: its successor may have written under a newer epoch, so it takes a new one itself.
            if holder.get("group") == handover.group and not handover.released:
                handover.resume(int(holder["epoch"]))
                return
        if handover.phase is Phase.STARTING:
            handover.predecessor = handover.predecessor or holder.get("group")  # set already when taking back
            held_by = handover.predecessor or "nobody"
            handover.enter(Phase.CATCHING_UP, f"following the log in its own group; {held_by} projects")
            return
        if handover.proof_overdue(settings.handover_proof_timeout_s):
            stuck = "no progress catching up" if handover.phase is Phase.CATCHING_UP else "not proven"
            handover.refuse(f"{stuck} for {settings.handover_proof_timeout_s:g}s: {handover.detail}")
            HANDOVERS.labels("refused").inc()
            return
        if handover.phase is Phase.CATCHING_UP:
            await _catch_up(worker)
        elif handover.phase is Phase.PROVING and await _proven(worker, changes):
            await _take_over(worker)
        elif handover.phase is Phase.TAKING_OVER:
            if handover.markers_epoch is None:  # putting the markers failed part-way: again, under a new epoch
                await _take_over(worker)
            else:
                handover.waiting_for_markers()


async def _catch_up(worker: Worker) -> None:
    handover = worker.handover
    if not recovery_completed(worker.app):
        handover.enter(Phase.CATCHING_UP, "recovering tables")
        return
    lag = await partition_lag(worker)
    expected = worker.settings.partitions * len(consumed_topics(worker.settings, worker.service))
    behind = sum(lag.values())
    if len(lag) == expected:
        handover.caught_up_to(behind)
    if len(lag) < expected or behind:
        handover.enter(Phase.CATCHING_UP, f"{behind} records behind on {len(lag)} fetched partitions")
        return
    previous = worker.tables.view(PROBE_CITY.code).item(PROBE_ITEM)
    handover.probe_price = next_probe_price(previous.price_cents if previous else None, random.randrange(1 << 30))
    setup, change = probe_batches(handover.probe_price, f"system:handover:{handover.group}", utc_now())
    handover.probe_batch_id = change.batch_id
    topic = worker.catalog_topic.get_topic_name()
    producer = worker.app.producer
    for batch in (setup, change):
        send = partial(producer.send_and_wait, topic, batch.city.encode(), batch.encode(), None, None, None)
        await worker.retry("sending the probe", send)
    handover.enter(Phase.PROVING, f"probe price {handover.probe_price} sent; comparing with the read model")


async def _proven(worker: Worker, changes: tuple[ExpectedChange, ...]) -> bool:
    handover = worker.handover
    probe = worker.tables.view(PROBE_CITY.code).item(PROBE_ITEM)
    if probe is None or probe.price_cents != handover.probe_price:
        if handover.probe_batch_id and worker.last_probe_batch == handover.probe_batch_id:
            got = "nothing" if probe is None else str(probe.price_cents)
            handover.refuse(f"the probe's price change to {handover.probe_price} came back applied as {got}")
            HANDOVERS.labels("refused").inc()
            return False
        handover.enter(Phase.PROVING, f"waiting for the probe price {handover.probe_price} to come back")
        return False
    for city in worker.settings.city_codes:
        if city in handover.compared:
            continue
        comparison = await compare_with_read_model(worker, city, changes)
        if comparison is None:
            handover.enter(Phase.PROVING, f"{city}: not at the read model's log position yet")
            return False
        handover.compared[city] = comparison
        if comparison.diverged:
            examples = "; ".join(comparison.examples)
            handover.refuse(f"{city}: {comparison.diverged} of {comparison.compared} prices diverge: {examples}")
            HANDOVERS.labels("refused").inc()
            return False
    return True


async def compare_with_read_model(worker: Worker, city: str, changes: tuple[ExpectedChange, ...]) -> Comparison | None:
    """This worker's prices against the read model's, where both stand at the same log position of the city;
    an empty comparison when the read model has no such city; None while the positions differ."""
    keys = city_keys(worker.settings.namespace, city)
    for _ in range(SAME_POSITION_ATTEMPTS):
        async with worker.resources.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.meta, "position")
            pipe.hvals(keys.items)
            stable_position, items = await pipe.execute()
        # No await from here on: this worker's position and tables are read as of one moment.
        mine = worker.applied_positions.get(city)
        if stable_position is None:
            return Comparison()
        if mine is not None and worker.handover.read_model_stalled(city, int(stable_position), mine):
            # Nobody writes the city (its holder died, or failed after taking over): there will never be a moment
            # both stand at the same position. Nothing to compare with; the probe still proves this worker, and
            # taking over brings the city level (streams.catalog_agent.catch_up_read_model).
            logger.warning(
                "%s: the read model stays at %s behind this worker (%d); not compared", city, stable_position, mine
            )
            return Comparison()
        # None: no record of the city came since this worker started; caught up, its tables are the city's.
        if mine is None or mine == int(stable_position):
            candidate = {i.item_id: i.price_cents for i in worker.tables.view(city).items() if not i.removed}
            return compare_city(city, candidate, (orjson.loads(raw) for raw in items), changes)
        await asyncio.sleep(0.05)
    return None


async def _take_over(worker: Worker) -> None:
    handover = worker.handover
    settings = worker.settings
    redis = worker.resources.redis
    keys = handover_keys(settings.namespace, worker.service.value)
    handover.enter(Phase.TAKING_OVER, "putting markers on every lane")
    handover.markers_epoch = None
    epoch = int(await worker.retry("taking an epoch", lambda: redis.incr(keys.epoch)))
    handover.epoch = epoch
    if handover.predecessor:  # a generation holds the log: it finishes up to each marker first
        handover.release_deadline = handover.clock() + settings.handover_release_timeout_s
    marker = HandoverMarker(epoch, handover.group, utc_now()).encode()
    producer = worker.app.producer
    for topic, partition in sorted(handover.lanes):
        send = partial(producer.send_and_wait, topic, None, marker, partition, None, None)
        await worker.retry("putting a handover marker", send)
    holder = {"group": handover.group, "epoch": epoch, "since": utc_now()}
    await worker.retry("naming the holder", lambda: redis.hset(keys.holder, mapping=holder))  # type: ignore[arg-type]
    handover.markers_put(epoch)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

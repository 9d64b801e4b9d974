"""Time-boxed pricing rules: when a rule's effective_at or until passes, a tick event goes onto the city's
log, so the re-pricing happens in order with every other change and replays the same way."""

import functools
import logging
import uuid

from models.events import Event, EventBatch, EventType, PricingRuleTick, utc_now
from streams.app import Worker
from streams.retry import retry_forever

logger = logging.getLogger(__name__)


def register_pricing_clock(worker: Worker) -> None:
    announced: set[tuple[str, str]] = set()

    @worker.app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def announce_rule_transitions() -> None:
        now = utc_now()
        for city, pricing in list(worker.tables.cities()):
            due = pricing.next_transition(now)
            if due is None or due > now or (city, due) in announced:
                continue
            announced.add((city, due))
            await retry_forever("pricing tick", functools.partial(publish_tick, worker, city, now), worker.stopping)


def tick_batch(city: str, now: str) -> EventBatch:
    event = Event(
        event_id=uuid.uuid4().hex,
        type=EventType.PRICING_RULE_TICK,
        city=city,
        occurred_at=now,
        actor="system:pricing-clock",
        payload=PricingRuleTick(),
    )
    return EventBatch(city=city, events=(event,), batch_id=event.event_id)


async def publish_tick(worker: Worker, city: str, now: str) -> None:
    batch = tick_batch(city, now)
    await worker.app.producer.send_and_wait(
        worker.catalog_topic.get_topic_name(), city.encode(), batch.encode(), None, None, None
    )
    logger.info("pricing tick published", extra={"city": city})

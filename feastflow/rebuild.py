"""Ask the workers to rewrite a city's read model in Redis from their tables.

The request is an event on the city's own log, so it is applied in order with every other change:
no race between the rebuild and live updates. SSE clients receive a fresh snapshot when it lands.
"""

import uuid

from api.publisher import EventPublisher
from feastflow.settings import Settings
from models.events import Event, EventBatch, EventType, ProjectionRebuild, utc_now
from streams.topics import catalog_topic_name


def rebuild_batch(city: str) -> EventBatch:
    event = Event(
        event_id=uuid.uuid4().hex,
        type=EventType.PROJECTION_REBUILD,
        city=city,
        occurred_at=utc_now(),
        actor="system:rebuild-projection",
        payload=ProjectionRebuild(),
    )
    return EventBatch(city=city, events=(event,), batch_id=event.event_id)


async def request_rebuild(settings: Settings, cities: tuple[str, ...]) -> None:
    publisher = EventPublisher(settings.kafka_bootstrap, catalog_topic_name(settings.namespace))
    await publisher.start()
    try:
        for city in cities:
            await publisher.publish(rebuild_batch(city))
    finally:
        await publisher.stop()

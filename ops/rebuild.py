"""Ask the workers to rewrite a city's read model in Redis from their tables.

The request is an event on the city's own log, so it is applied in order with every other change:
no race between the rebuild and live updates. SSE clients receive a fresh snapshot when it lands.
"""

from core.publisher import EventPublisher
from core.settings import Settings
from models.events import ProjectionRebuild, system_batch, utc_now

REBUILD_ACTOR = "system:rebuild-projection"


async def request_rebuild(settings: Settings, cities: tuple[str, ...]) -> None:
    publisher = EventPublisher(settings.kafka_bootstrap, settings.namespace)
    await publisher.start()
    try:
        for city in cities:
            await publisher.publish(system_batch(city, ProjectionRebuild(), REBUILD_ACTOR, utc_now()))
    finally:
        await publisher.stop()

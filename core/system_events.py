"""Events the system itself puts on city logs (a pricing tick, a reprice, a rebuild request): each is a one-event
batch keyed by its city on the catalog topic, so it is applied in order with every other change of that city.

Workers send through their Faust producer, operations tools through an EventPublisher; both hand
`send_system_event` a function that puts one record (topic, key, value) on Kafka.
"""

from collections.abc import Awaitable, Callable, Iterable

from core.publisher import EventPublisher
from core.settings import Settings
from models.events import EventBatch, SystemPayload, system_batch, utc_now

SendRecord = Callable[[str, bytes, bytes], Awaitable[object]]  # (topic, key, value)


async def send_system_event(
    send: SendRecord, topic: str, cities: Iterable[str], payload: SystemPayload, actor: str, now: str | None = None
) -> list[EventBatch]:
    """Put `payload` on each city's log, one batch per city, in the order given; return the batches sent."""
    sent = []
    for city in cities:
        batch = system_batch(city, payload, actor, now or utc_now())
        await send(topic, city.encode(), batch.encode())
        sent.append(batch)
    return sent


async def publish_system_event(
    settings: Settings, cities: Iterable[str], payload: SystemPayload, actor: str
) -> list[EventBatch]:
    """The same from an operations tool: a publisher of its own for the time it takes."""
    publisher = EventPublisher(settings.kafka_bootstrap, settings.namespace)
    await publisher.start()
    try:
        return await send_system_event(publisher.send, publisher.catalog_topic, cities, payload, actor)
    finally:
        await publisher.stop()

"""The project's topics for operations tools: creating them (core.topic_admin), and whether the catalog log has
anything yet."""

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.settings import Settings
from core.topic_admin import ensure_topics
from core.topics import catalog_topic_name

logger = logging.getLogger(__name__)


async def catalog_has_events(settings: Settings) -> bool:
    """True once anything was ever published to the catalog log (its end offsets are past zero)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        topic = catalog_topic_name(settings.namespace)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(settings.partitions)])
        return any(offset > 0 for offset in ends.values())
    finally:
        await consumer.stop()


__all__ = ["catalog_has_events", "ensure_topics"]

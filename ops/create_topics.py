"""Create the project's topics explicitly (the broker never auto-creates): idempotent.

That includes every worker service's table changelogs, before any worker starts (see
core.topics.changelog_topics for the startup race this closes)."""

import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from core.topics import catalog_topic_name, changelog_topics, project_topics

logger = logging.getLogger(__name__)


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; return the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="feastflow-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = [
            *project_topics(settings.namespace, settings.partitions),
            *changelog_topics(settings.namespace, settings.partitions, settings.shadow_label),
        ]
        wanted = [spec for spec in specs if spec.name not in existing]
        if not wanted:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
            replicas = settings.replication_factor
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, replication_factor=replicas, topic_configs=s.config) for s in wanted]
            )
        return [s.name for s in wanted]
    finally:
        await admin.close()


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

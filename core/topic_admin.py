"""Create the project's topics explicitly (the broker never auto-creates): idempotent.

That includes every worker service's table changelogs, before any worker starts (see
core.topics.changelog_topics for the startup race this closes). `feastflow topics` runs it for the stack, and a
worker runs it before it starts, for the changelogs of its own generation (streams.handover)."""

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from core.topics import changelog_topics, project_topics


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; return the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="feastflow-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        specs = [
            *project_topics(settings.namespace, settings.partitions),
            *changelog_topics(
                settings.namespace, settings.partitions, settings.shadow_label, settings.worker_generation
            ),
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


async def delete_generation_topics(settings: Settings, generation: str) -> list[str]:
    """Delete the table changelogs of a worker generation nobody runs any more (a refused successor, a replaced
    predecessor); never those of the base generation (""). Returns the topics deleted."""
    if not generation:
        return []
    marker = f"-{generation}-"
    wanted = {
        spec.name
        for spec in changelog_topics(settings.namespace, settings.partitions, settings.shadow_label, generation)
        if marker in spec.name
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="feastflow-topics")
    await admin.start()
    try:
        names = sorted(wanted & set(await admin.list_topics()))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()

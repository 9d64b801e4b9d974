"""The project's topics for operations tools: creating them (core.topic_admin), and whether the catalog log has
anything yet."""

import asyncio
import logging

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.settings import Settings
from core.topic_admin import ensure_topics
from core.topics import catalog_topic_name
from models.handover import PROBE_CITY, decode_marker

logger = logging.getLogger(__name__)


async def catalog_has_events(settings: Settings, timeout_s: float = 30.0) -> bool:
    """True once an event for a served city was ever published to the catalog log. What workers put there of
    their own accord does not count: handover markers and probe changes (models.handover), which a fresh
    stack's first worker writes before anyone seeds it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = catalog_topic_name(settings.namespace)
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        if not pending:
            return False
        consumer.assign(sorted(pending, key=lambda tp: tp.partition))
        await consumer.seek_to_beginning(*pending)
        async with asyncio.timeout(timeout_s):
            while pending:
                fetched = await consumer.getmany(*pending, timeout_ms=500)
                for tp, records in fetched.items():
                    if any(_is_event(record.value) for record in records):
                        return True
                    if records and records[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
        return False
    except TimeoutError:
        logger.warning("could not read the catalog log within %.0fs; assuming it has events", timeout_s)
        return True
    finally:
        await consumer.stop()


def _is_event(value: bytes | None) -> bool:
    if value is None or decode_marker(value) is not None:
        return False
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return True  # something was published, if nothing usable
    return not (isinstance(document, dict) and document.get("city") == PROBE_CITY.code)


__all__ = ["catalog_has_events", "ensure_topics"]

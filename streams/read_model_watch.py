"""Notices when Redis lost a city's read model (a flush, a restart without persistence) and asks for a
rebuild on the city's own log, so customers get their menu back without anyone running a command."""

import logging
import time

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from core.redis_keys import city_keys
from models.events import ProjectionRebuild
from streams.app import Worker
from streams.timers import worker_timer

logger = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0
REQUEST_AT_MOST_EVERY_S = 30.0


def register_read_model_watch(worker: Worker) -> None:
    partitioner = DefaultPartitioner()
    requested: dict[str, float] = {}
    topic = worker.catalog_topic.get_topic_name()
    partitions = list(range(worker.settings.partitions))

    @worker_timer(worker, CHECK_EVERY_S)
    async def rebuild_lost_read_models() -> None:
        assignment = worker.app.consumer.assignment()
        now = time.monotonic()
        for city in worker.settings.city_codes:
            key = city.encode()
            partition = partitioner(key, partitions, partitions)
            if TP(topic, partition) not in assignment or not worker.handover.projects((topic, partition)):
                continue
            if now - requested.get(city, -REQUEST_AT_MOST_EVERY_S) < REQUEST_AT_MOST_EVERY_S:
                continue
            if await worker.resources.redis.exists(city_keys(worker.settings.namespace, city).meta):
                continue
            if next(iter(worker.tables.view(city).restaurants()), None) is None:
                continue  # nothing to show for this city yet
            requested[city] = now
            logger.warning("Redis has no read model for %s; requesting a rebuild", city, extra={"city": city})
            await worker.send_system_event("rebuild request", [city], ProjectionRebuild(), "system:read-model-watch")

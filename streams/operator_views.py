"""Our pages on the Faust worker's web server: readiness, partition assignment, table values, dead letters."""

import dataclasses
import logging
from typing import Any

from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.app import Worker
from streams.delivery import guard_of, recovery_completed
from streams.state import (
    city_key,
    decode_item,
    decode_pricing,
    decode_restaurant,
    record_key,
)

logger = logging.getLogger(__name__)


def worker_ready(worker: Worker) -> tuple[bool, str]:
    """Ready only once table recovery finished and no rebalance is under way."""
    app = worker.app
    if not recovery_completed(app):
        return False, "recovering tables"
    if app.rebalancing:
        return False, "rebalancing"
    if worker.app.should_stop:
        return False, "stopping"
    return True, "ready"


def register_operator_views(worker: Worker) -> None:
    app = worker.app

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        # aiohttp takes the charset apart from the media type; Prometheus reads either form.
        media_type, _, _charset = CONTENT_TYPE_LATEST.partition(";")
        return self.bytes(generate_latest(), content_type=media_type)

    @app.page("/feastflow/health/")
    async def health(self: View, request: Request) -> Response:
        return self.json({"status": "alive"})

    @app.page("/feastflow/ready/")
    async def ready(self: View, request: Request) -> Response:
        is_ready, reason = worker_ready(worker)
        if is_ready:
            try:
                await worker.resources.redis.ping()
            except Exception as exc:
                is_ready, reason = False, f"redis unreachable: {exc!r}"
        return self.json({"ready": is_ready, "reason": reason}, status=200 if is_ready else 503)

    @app.page("/feastflow/assignment/")
    async def assignment(self: View, request: Request) -> Response:
        consumer: Any = app.consumer
        guard = guard_of(app)
        partitions = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        return self.json(
            {
                "worker": worker.settings.worker_name,
                "service": worker.service.value,
                "group": app.conf.id,
                "settings": {
                    "fetch_max_wait_ms": worker.settings.fetch_max_wait_ms,
                    "commit_interval_s": worker.settings.commit_interval_s,
                    "max_poll_records": worker.settings.broker_max_poll_records,
                },
                "generation": app.consumer_generation_id,
                "rewinds": guard.rewinds,
                "partitions": [
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": consumer._committed_offset.get(tp),
                        "read": consumer._read_offset.get(tp),
                        "paused": tp in consumer._paused_partitions,
                        "active": consumer._active_partitions is None or tp in consumer._active_partitions,
                    }
                    for tp in partitions
                ],
            }
        )

    @app.page("/feastflow/replay/{partition}/{offset}/")
    class Replay(View):
        """POST: process a partition of the catalog topic again from an offset (duplicates are harmless)."""

        async def post(self, request: Request, partition: str, offset: str) -> Response:
            tp = TP(worker.catalog_topic.get_topic_name(), int(partition))
            if tp not in app.consumer.assignment():
                return self.json({"error": {"code": "not_assigned", "message": f"{tp} is not here"}}, status=409)
            await guard_of(app).replay(app, tp, int(offset))
            return self.json({"replaying": {"partition": tp.partition, "from": int(offset)}})

    @app.page("/feastflow/tables/{table}/{city}/{record_id}/")
    async def table_value(self: View, request: Request, table: str, city: str, record_id: str) -> Response:
        tables = worker.tables
        readers = {
            "items": (tables.items, decode_item, record_key(city, record_id)),
            "restaurants": (tables.restaurants, decode_restaurant, record_key(city, record_id)),
            "pricing": (tables.pricing, decode_pricing, city_key(city)),
        }
        if table not in readers:
            return self.json({"error": {"code": "not_found", "message": f"no table {table!r}"}}, status=404)
        source, decode, key = readers[table]
        raw = source.get(key)
        if raw is None:
            return self.json({"error": {"code": "not_found", "message": "no such key here"}}, status=404)
        record = decode(raw)
        return self.json({"table": table, "key": key.decode(), "value": _plain(record)})


def _plain(record: Any) -> Any:
    return dataclasses.asdict(record)

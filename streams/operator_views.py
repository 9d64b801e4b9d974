"""Our pages on the Faust worker's web server: readiness, partition assignment and lag, table values, the latest
dead letters. Each answers JSON, or an HTML page to a browser (streams.operator_pages)."""

import dataclasses
import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.tokens import KeyRing, Role, TokenRefused, verify_token
from streams.app import Worker
from streams.delivery import ReplayWouldSkip, guard_of, recovery_completed
from streams.handover_state import lane_name
from streams.metrics import LIVE, OLDEST_RECORD_AGE
from streams.operator_pages import answer
from streams.state import (
    city_key,
    decode_item,
    decode_pricing,
    decode_restaurant,
    record_key,
)

logger = logging.getLogger(__name__)

DEAD_LETTERS_SHOWN = 20
DEAD_LETTERS_MAX = 200


def worker_ready(worker: Worker) -> tuple[bool, str]:
    """Ready only once table recovery finished and no rebalance is under way."""
    app = worker.app
    if not recovery_completed(app):
        return False, "recovering tables"
    if app.rebalancing:
        return False, "rebalancing"
    if worker.app.should_stop:
        return False, "stopping"
    waiting = worker.health.retries()
    if waiting:
        return False, "waiting for a dependency: " + ", ".join(waiting)
    return worker.handover.ready()


def register_operator_views(worker: Worker) -> None:
    app = worker.app
    # Read at scrape time: a stuck worker's timers may be stuck too, a scrape still answers.
    LIVE.set_function(lambda: 1.0 if worker.health.live()[0] else 0.0)
    OLDEST_RECORD_AGE.set_function(worker.health.oldest_record_age)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        # aiohttp takes the charset apart from the media type; Prometheus reads either form.
        media_type, _, _charset = CONTENT_TYPE_LATEST.partition(";")
        return self.bytes(generate_latest(), content_type=media_type)

    @app.page("/feastflow/")
    async def index(self: View, request: Request) -> Response:
        document = {
            "worker": worker.settings.worker_name,
            "service": worker.service.value,
            "views": {
                "/feastflow/health/": "the web server answers (startup probe)",
                "/feastflow/live/": "liveness (503 once one record has been in processing longer than the bound)",
                "/feastflow/ready/": "readiness (503 until tables are recovered and no rebalance runs)",
                "/feastflow/assignment/": "partitions held here, processed position, log end and lag",
                "/feastflow/tables/{items|restaurants|pricing}/{city}/{id}/": "a table's value by key",
                "/feastflow/dead-letters/?limit=N": "the latest dead letters with their reasons",
                "/feastflow/replay/{partition}/{offset}/": "POST, admin token: process a partition again",
                "/feastflow/handover/": "handover phase, epoch, lanes held; POST, admin token: take the log back",
                "/metrics": "Prometheus metrics",
            },
        }
        return answer(self, request, f"Feast Flow worker {worker.settings.worker_name}", document)

    @app.page("/feastflow/health/")
    async def health(self: View, request: Request) -> Response:
        return answer(self, request, "Liveness", {"status": "alive"})

    @app.page("/feastflow/live/")
    async def live(self: View, request: Request) -> Response:
        is_live, reason = worker.health.live()
        document = {"live": is_live, "reason": reason, "stuck_after_s": worker.health.stuck_after_s}
        return answer(self, request, "Liveness", document, 200 if is_live else 503)

    @app.page("/feastflow/ready/")
    async def ready(self: View, request: Request) -> Response:
        is_ready, reason = worker_ready(worker)
        if is_ready:
            try:
                await worker.resources.redis.ping()
            except Exception as exc:
                is_ready, reason = False, f"redis unreachable: {exc!r}"
        return answer(self, request, "Readiness", {"ready": is_ready, "reason": reason}, 200 if is_ready else 503)

    @app.page("/feastflow/assignment/")
    async def assignment(self: View, request: Request) -> Response:
        consumer: Any = app.consumer
        guard = guard_of(app)
        partitions = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        try:
            positions = await guard.positions(app)
        except Exception as exc:  # mid-rebalance: show the assignment without positions
            logger.debug("positions unavailable: %r", exc)
            positions = {}
        document = {
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
            "total_lag": sum(end - next_offset for next_offset, end in positions.values()),
            "partitions": [
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": consumer._committed_offset.get(tp),
                    "next_to_process": positions[tp][0] if tp in positions else None,
                    "log_end": positions[tp][1] if tp in positions else None,
                    "lag": positions[tp][1] - positions[tp][0] if tp in positions else None,
                    "read": consumer._read_offset.get(tp),
                    "paused": tp in consumer._paused_partitions,
                    "active": consumer._active_partitions is None or tp in consumer._active_partitions,
                }
                for tp in partitions
            ],
        }
        return answer(self, request, "Partition assignment and lag", document)

    @app.page("/feastflow/dead-letters/")
    async def dead_letters(self: View, request: Request) -> Response:
        try:
            limit = min(DEAD_LETTERS_MAX, max(1, int(request.query.get("limit", DEAD_LETTERS_SHOWN))))
        except ValueError:
            return self.json({"error": {"code": "invalid", "message": "limit must be a number"}}, status=400)
        letters = await latest_dead_letters(worker, limit)
        return answer(self, request, "Latest dead letters", {"count": len(letters), "dead_letters": letters})

    @app.page("/feastflow/replay/{partition}/{offset}/")
    class Replay(View):
        """POST: process a partition of the catalog topic again from an offset (duplicates are harmless)."""

        async def post(self, request: Request, partition: str, offset: str) -> Response:
            refusal = admin_refusal(worker, request)
            if refusal is not None:
                return self.json(refusal[1], status=refusal[0])
            if not (partition.isdecimal() and partition.isascii() and offset.isdecimal() and offset.isascii()):
                return self.json(_error("invalid", "partition and offset are whole numbers"), status=422)
            tp = TP(worker.catalog_topic.get_topic_name(), int(partition))
            if tp not in app.consumer.assignment():
                return self.json(_error("not_assigned", f"{tp} is not here"), status=409)
            try:
                await guard_of(app).replay(app, tp, int(offset))
            except ReplayWouldSkip as exc:
                return self.json(_error("not_processed_yet", str(exc)), status=409)
            return self.json({"replaying": {"partition": tp.partition, "from": int(offset)}})

    @app.page("/feastflow/handover/")
    class HandoverView(View):
        """GET: where this worker stands in a handover. POST: a retired worker proves itself again and takes the
        log back under a new epoch (a rollout whose successor failed after taking over)."""

        async def get(self, request: Request) -> Response:
            return answer(self, request, "Handover", handover_document(worker))

        async def post(self, request: Request) -> Response:
            refusal = admin_refusal(worker, request)
            if refusal is not None:
                return self.json(refusal[1], status=refusal[0])
            if not worker.handover.take_back():
                phase = worker.handover.phase.value
                return self.json(
                    _error("not_retired", f"only a retired worker takes back; this one is {phase}"), status=409
                )
            return self.json(handover_document(worker), status=202)

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
        record: Any = decode(raw)
        document = {"table": table, "key": key.decode(), "value": dataclasses.asdict(record)}
        return answer(self, request, f"{table} {key.decode()}", document)


def admin_refusal(worker: Worker, request: Request) -> tuple[int, dict[str, Any]] | None:
    """Why a mutating view refuses this request (status and the contract's error body), or None for an admin."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token:
        return 401, _error("missing_token", "an admin bearer token is required")
    try:
        principal = verify_token(KeyRing.from_settings(worker.settings), token)
    except TokenRefused as refused:
        return 401, _error(refused.code, refused.message)
    if principal.role is not Role.ADMIN:
        return 403, _error("forbidden", "this needs the admin role")
    logger.info("operator view used by %s", principal.subject)
    return None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def latest_dead_letters(worker: Worker, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` records of the dead-letter topic, newest first (read without joining any group)."""
    topic = worker.dead_letter_topic.get_topic_name()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=worker.settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        # `feastflow topics` creates every topic with the configured partition count.
        partitions = [TopicPartition(topic, p) for p in range(worker.settings.partitions)]
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - limit))
        letters: list[dict[str, Any]] = []
        pending = {tp for tp in partitions if ends[tp] > starts[tp]}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            if not batches:
                break
            for tp, records in batches.items():
                letters.extend(_dead_letter_row(record) for record in records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    letters.sort(key=lambda letter: str(letter.get("dead_lettered_at", "")), reverse=True)
    return letters[:limit]


def _dead_letter_row(record: Any) -> dict[str, Any]:
    try:
        document = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        document = {"reason": "unreadable dead letter", "value": record.value.decode(errors="replace")}
    return {
        "dead_lettered_at": document.get("dead_lettered_at"),
        "reason": document.get("reason"),
        "kind": document.get("kind"),  # streams.failures.DeadLetterKind; absent from letters of older builds
        "source": f"{document.get('topic')}[{document.get('partition')}]@{document.get('offset')}",
        "key": document.get("key"),
        "value": str(document.get("value", ""))[:500],
    }


def handover_document(worker: Worker) -> dict[str, Any]:
    handover = worker.handover
    return {
        "group": handover.group,
        "phase": handover.phase.value,
        "detail": handover.detail,
        "epoch": handover.epoch,
        "predecessor": handover.predecessor,
        "lanes_held": sorted(lane_name(lane) for lane in handover.projecting),
        "lanes": len(handover.lanes),
    }

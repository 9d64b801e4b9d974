"""The Faust app: settings, tables, topics and the services every agent shares."""

import enum
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, TypeVar

import aiopg
import faust
from mode import Service
from redis.asyncio import Redis

from core.settings import Settings
from core.system_events import send_system_event
from core.topics import CATALOG_TABLES, catalog_topic_name, consumer_group, dead_letter_topic_name, order_topic_name
from models.events import SystemPayload
from streams.delivery import TRANSPORT_SCHEME, DeliveryGuard
from streams.handover_state import Handover, HeldBack, Lane
from streams.health import WorkerHealth
from streams.order_projection import OrderProjection
from streams.projection import MenuProjection
from streams.retry import retry_forever
from streams.state import CatalogTables

logger = logging.getLogger(__name__)
T = TypeVar("T")


class FeastFlowApp(faust.App):
    """A Faust app that carries the delivery guard its consumer consults on every ack."""

    delivery_guard: DeliveryGuard
    fetch_max_wait_ms: int


class Resources(Service):
    """Redis and PostgreSQL clients, opened with the worker and closed with it."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.redis = Redis.from_url(settings.redis_url, health_check_interval=10)
        self._pool: aiopg.Pool | None = None

    async def pg_pool(self) -> aiopg.Pool:
        if self._pool is None:
            self._pool = await aiopg.create_pool(self.settings.pg_dsn, minsize=1, maxsize=4, timeout=10)
        return self._pool

    async def on_stop(self) -> None:
        await self.redis.aclose()
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()


class WorkerService(enum.StrEnum):
    """What a worker process runs (FEASTFLOW_WORKER_SERVICE). Menu and pricing are one service: both live
    on one ordered log per city, and an effective price is a function of both."""

    ALL = "all"  # the local stack: every agent in one process
    CATALOG = "catalog"  # menu and pricing: applies the catalog log, projects it to Redis and PostgreSQL
    ORDERS = "orders"  # prices and stores orders against its own copy of the catalog tables
    SHADOW = "shadow"  # a candidate pricing version: own tables, compared with the stable read model, no writes

    @property
    def projects_catalog(self) -> bool:
        return self in (WorkerService.ALL, WorkerService.CATALOG)

    @property
    def runs_orders(self) -> bool:
        return self in (WorkerService.ALL, WorkerService.ORDERS)

    def app_id(self, settings: Settings) -> str:
        """The consumer group (and table changelog prefix): one per service, so each keeps its own offsets."""
        return consumer_group(settings.namespace, self.value, settings.shadow_label, settings.worker_generation)


def worker_service(settings: Settings) -> WorkerService:
    if settings.track_file and pod_track(settings.track_file) == "shadow":
        return WorkerService.SHADOW  # a canary pod of an Argo Rollout: the candidate runs in shadow
    try:
        return WorkerService(settings.worker_service)
    except ValueError:
        choices = ", ".join(s.value for s in WorkerService)
        raise SystemExit(f"FEASTFLOW_WORKER_SERVICE={settings.worker_service!r}: expected one of {choices}") from None


@dataclass
class Worker:
    """Everything an agent needs, built once per process."""

    settings: Settings
    service: WorkerService
    app: FeastFlowApp
    tables: CatalogTables
    catalog_topic: faust.TopicT
    order_topic: faust.TopicT
    dead_letter_topic: faust.TopicT
    resources: Resources
    health: WorkerHealth
    handover: Handover
    # The last catalog offset applied per city (the shadow compares where both sides stand at the same one),
    # and the partition its records come from (a handover checks a partition's cities when it takes it).
    applied_positions: dict[str, int] = field(default_factory=dict)
    city_partitions: dict[str, int] = field(default_factory=dict)
    last_probe_batch: str = ""  # the handover probe's batch this worker applied last
    held_back: HeldBack = field(default_factory=HeldBack)

    @cached_property
    def projection(self) -> MenuProjection:
        handover = self.handover
        return MenuProjection(
            self.resources.redis, self.settings.namespace, self.settings.feed_maxlen, lambda: handover.epoch
        )

    @cached_property
    def order_projection(self) -> OrderProjection:
        return OrderProjection(self.resources.redis, self.settings.namespace)

    def stopping(self) -> bool:
        return bool(self.app.should_stop)

    async def retry(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry a write while its dependency is unreachable (not ready meanwhile); raise a refusal at once."""
        return await retry_forever(what, attempt, self.stopping, self.health)

    async def send_system_event(
        self, what: str, cities: Iterable[str], payload: SystemPayload, actor: str, now: str | None = None
    ) -> None:
        """Put a system event on cities' catalog logs with the worker's producer. Each record is retried as it
        is, so a retried batch keeps its event id."""

        async def send(topic: str, key: bytes, value: bytes) -> None:
            producer = self.app.producer
            await self.retry(what, partial(producer.send_and_wait, topic, key, value, None, None, None))

        await send_system_event(send, self.catalog_topic.get_topic_name(), cities, payload, actor, now)


TRACK_LABEL = "feastflow.io/track"


def pod_track(labels_file: str) -> str:
    """The pod's `feastflow.io/track` label (stable or shadow) from a downward-API labels file; Argo Rollouts
    sets it on canary and stable pods and changes it on promotion."""
    try:
        lines = Path(labels_file).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == TRACK_LABEL:
            return value.strip().strip('"')
    return ""


def consumed_topics(settings: Settings, service: WorkerService) -> tuple[str, ...]:
    catalog = catalog_topic_name(settings.namespace)
    return (catalog, order_topic_name(settings.namespace)) if service.runs_orders else (catalog,)


def group_instance_id(settings: Settings, service: WorkerService) -> str:
    """Static group membership (opt-in) lets a restarted worker take its partitions straight back, but a
    static member never leaves the group on SIGTERM (aiokafka cannot send that LeaveGroup), so by default
    workers are dynamic members: a deploy's SIGTERM hands partitions over at once, a crash waits out the
    10 s session. The broker hands a rejoining static member its cached assignment, so a build that
    consumes other topics must rejoin under another identity: the id carries a digest of its topics."""
    topics = ",".join(sorted(consumed_topics(settings, service)))
    return f"{settings.worker_name}.{hashlib.sha256(topics.encode()).hexdigest()[:8]}"


def create_app(settings: Settings) -> Worker:
    service = worker_service(settings)
    datadir = settings.worker_data_dir(service.app_id(settings))
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = FeastFlowApp(
        service.app_id(settings),
        broker=f"{TRANSPORT_SCHEME}://{settings.kafka_bootstrap}",
        store="rocksdb://",
        datadir=str(datadir),
        web_port=settings.worker_web_port,
        web_host=settings.worker_web_host,
        # Faust binds 0.0.0.0 unless told: operator views listen only where settings say (loopback by default).
        web_bind=settings.worker_web_host,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,  # Faust's changelog and assignor topics
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        consumer_group_instance_id=group_instance_id(settings, service) if settings.static_membership else None,
        table_standby_replicas=1,
        producer_acks=-1,
        broker_max_poll_records=settings.broker_max_poll_records,
        broker_commit_every=1000,
        broker_commit_interval=settings.commit_interval_s,
        stream_buffer_maxsize=1024,
        consumer_auto_offset_reset="earliest",
        web_in_thread=False,
    )

    def raw_topic(name: str) -> faust.TopicT:
        # Raw bytes in: the agents decode (and dead-letter what they cannot), never Faust's codecs.
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    catalog_topic = raw_topic(catalog_topic_name(settings.namespace))
    order_topic = raw_topic(order_topic_name(settings.namespace))
    dead_letter_topic = raw_topic(dead_letter_topic_name(settings.namespace))
    app.delivery_guard = DeliveryGuard(set(consumed_topics(settings, service)))
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms

    def table(name: str) -> Any:
        # bytes in, bytes out: Faust then uses its raw codec for keys and values alike.
        return app.Table(name, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    tables = CatalogTables(*(table(name) for name in CATALOG_TABLES))
    resources = Resources(settings)
    app.service(resources)  # type: ignore[arg-type]  # Faust starts instances as well (App._prepare_subservice)
    health = WorkerHealth(stuck_after_s=settings.stuck_after_s)
    handover = Handover(service.app_id(settings), written_lanes(settings, service))
    if not settings.worker_handover:  # a group of several pods shares the lanes: every member writes at once
        handover.resume(0)
    return Worker(
        settings, service, app, tables, catalog_topic, order_topic, dead_letter_topic, resources, health, handover
    )


def written_lanes(settings: Settings, service: WorkerService) -> frozenset[Lane]:
    """The partitions a worker of this service writes for (a handover passes each at its marker): the catalog's
    when it projects the read model, the order commands' when it decides orders; none for the shadow."""
    topics = []
    if service.projects_catalog:
        topics.append(catalog_topic_name(settings.namespace))
    if service.runs_orders:
        topics.append(order_topic_name(settings.namespace))
    return frozenset((topic, partition) for topic in topics for partition in range(settings.partitions))

"""The API's Kafka producer: idempotent, acks=all; a request is answered only after Kafka acknowledged.

An acknowledgement is awaited for `ack_timeout_s` at most: while the broker is gone aiokafka keeps a record
buffered (and delivers it once the broker is back) without ever failing the send, so an unbounded wait leaves
the client with no answer at all. Past the bound the request answers 503; the record's fate is then unknown to
the client (it may still be delivered), which is why order commands carry an idempotency key and admin events
may carry expected_version.
"""

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Histogram

from core.topics import catalog_topic_name, order_topic_name
from models.events import EventBatch
from models.orders import OrderCommand, encode_command

logger = logging.getLogger(__name__)

PRODUCE_LATENCY = Histogram(
    "feastflow_api_kafka_produce_seconds",
    "Time until Kafka acknowledged a record",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
PRODUCE_FAILURES = Counter(
    "feastflow_api_kafka_produce_failures_total", "Records Kafka did not acknowledge", ["topic"]
)  # topic: catalog | orders


DEFAULT_ACK_TIMEOUT_S = 10.0


class EventPublisher:
    def __init__(
        self,
        bootstrap: str,
        namespace: str,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self.ack_timeout_s = ack_timeout_s
        self.catalog_topic = catalog_topic_name(namespace)
        self.order_topic = order_topic_name(namespace)
        self._kinds = {self.catalog_topic: "catalog", self.order_topic: "orders"}  # the metrics' topic label
        self.producer = producer or AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            request_timeout_ms=15_000,
            client_id="feastflow-api",
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(self, batch: EventBatch) -> int:
        """Publish one city's batch as one record keyed by the city; return its offset."""
        return await self.send(self.catalog_topic, batch.city.encode(), batch.encode())

    async def publish_order(self, command: OrderCommand) -> int:
        """Order commands are keyed by city too: the worker holding the city's catalog tables prices them."""
        return await self.send(self.order_topic, command.city.encode(), encode_command(command))

    async def send(self, topic: str, key: bytes, value: bytes) -> int:
        """Put one encoded record on the catalog or the order topic; return its offset."""
        kind = self._kinds[topic]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                metadata = await self.producer.send_and_wait(topic, value, key=key)
        except Exception:
            PRODUCE_FAILURES.labels(kind).inc()
            raise
        PRODUCE_LATENCY.labels(kind).observe(time.perf_counter() - started)
        return int(metadata.offset)

    async def reachable(self) -> bool:
        return bool(self.producer.client.cluster.brokers()) and await self.producer.client.ready(
            self.producer.client.get_random_node()
        )

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

from api.metrics import PRODUCE_FAILURES, PRODUCE_LATENCY
from models.events import EventBatch
from models.orders import OrderCommand, encode_command
from streams.topics import catalog_topic_name, order_topic_name

logger = logging.getLogger(__name__)


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
        return await self._send("catalog", self.catalog_topic, batch.encode(), batch.city.encode())

    async def publish_order(self, command: OrderCommand) -> int:
        """Order commands are keyed by city too: the worker holding the city's catalog tables prices them."""
        return await self._send("orders", self.order_topic, encode_command(command), command.city.encode())

    async def _send(self, kind: str, topic: str, value: bytes, key: bytes) -> int:
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

"""The API's Kafka producer: idempotent, acks=all; a request is answered only after Kafka acknowledged."""

import logging

from aiokafka import AIOKafkaProducer

from models.events import EventBatch
from models.orders import OrderCommand, encode_command
from streams.topics import catalog_topic_name, order_topic_name

logger = logging.getLogger(__name__)


class EventPublisher:
    def __init__(self, bootstrap: str, namespace: str) -> None:
        self.catalog_topic = catalog_topic_name(namespace)
        self.order_topic = order_topic_name(namespace)
        self.producer = AIOKafkaProducer(
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
        metadata = await self.producer.send_and_wait(self.catalog_topic, batch.encode(), key=batch.city.encode())
        return int(metadata.offset)

    async def publish_order(self, command: OrderCommand) -> int:
        """Order commands are keyed by city too: the worker holding the city's catalog tables prices them."""
        record = encode_command(command)
        metadata = await self.producer.send_and_wait(self.order_topic, record, key=command.city.encode())
        return int(metadata.offset)

    async def reachable(self) -> bool:
        return bool(self.producer.client.cluster.brokers()) and await self.producer.client.ready(
            self.producer.client.get_random_node()
        )

"""The API's producer waits for Kafka's acknowledgement for a bounded time, never forever."""

import asyncio
import time
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer

from core.publisher import EventPublisher
from models.events import PricingReprice, system_batch, utc_now


class BrokerGone:
    """aiokafka while the broker is away: the record stays buffered and the send never completes."""

    def __init__(self) -> None:
        self.cancelled = False

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_an_unacknowledged_publish_gives_up_at_its_bound() -> None:
    producer = BrokerGone()
    publisher = EventPublisher("127.0.0.1:1", "ns", ack_timeout_s=0.2, producer=cast(AIOKafkaProducer, producer))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await publisher.publish(system_batch("blr", PricingReprice(), "test", utc_now()))
    assert 0.2 <= time.monotonic() - started < 1.0
    assert producer.cancelled

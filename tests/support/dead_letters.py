"""Reading a stack's dead-letter topic from its start, until what a test waits for is there."""

from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from core.topics import dead_letter_topic_name
from tests.support.polling import poll_until
from tests.support.stack import Stack

Letter = dict[str, Any]


async def read_dead_letters(stack: Stack, enough: Callable[[list[Letter]], bool], timeout: float = 20) -> list[Letter]:
    """Every dead letter read so far, once `enough` of them are there (fails after `timeout`)."""
    consumer = AIOKafkaConsumer(
        dead_letter_topic_name(stack.namespace),
        bootstrap_servers=stack.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    letters: list[Letter] = []
    await consumer.start()
    try:

        async def arrived() -> list[Letter]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters.extend(orjson.loads(record.value) for record in records)
            return letters if enough(letters) else []

        return await poll_until(arrived, timeout, 0, "the dead letters waited for did not arrive")
    finally:
        await consumer.stop()


async def wait_dead_letter(stack: Stack, matches: Callable[[Letter], bool], timeout: float = 20) -> Letter:
    """The first dead letter that `matches`."""
    letters = await read_dead_letters(stack, lambda seen: any(matches(x) for x in seen), timeout)
    return next(x for x in letters if matches(x))

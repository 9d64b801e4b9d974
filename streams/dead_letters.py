"""The dead-letter topic: a record no agent can use is parked there with the reason, and the agent goes on."""

import logging
from typing import Any

import orjson

from models.events import utc_now
from streams.app import Worker
from streams.failures import DeadLetterKind, is_transient
from streams.metrics import DEAD_LETTERS
from streams.retry import retry_forever

logger = logging.getLogger(__name__)

TRUNCATED_VALUE_CHARS = 4096  # when the broker refuses the whole record (too large), park its head


def dead_letter_document(message: Any, kind: DeadLetterKind, reason: str, value_chars: int | None = None) -> bytes:
    value = (message.value or b"").decode(errors="replace")
    document = {
        "reason": reason,
        "kind": kind.value,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "dead_lettered_at": utc_now(),
        "key": (message.key or b"").decode(errors="replace"),
        "value": value if value_chars is None else value[:value_chars],
    }
    if value_chars is not None and len(value) > value_chars:
        document["value_truncated"] = True
    return orjson.dumps(document)


async def dead_letter(worker: Worker, message: Any, kind: DeadLetterKind, reason: str) -> None:
    DEAD_LETTERS.labels(message.topic.rsplit(".", 1)[-1], kind.value).inc()
    logger.warning(
        "dead-lettering %s[%d]@%d (%s): %s",
        message.topic,
        message.partition,
        message.offset,
        kind.value,
        reason,
        extra={"offset": message.offset, "partition": message.partition, "reason": reason},
    )
    topic = worker.dead_letter_topic.get_topic_name()

    async def send(document: bytes) -> None:
        await worker.app.producer.send_and_wait(topic, message.key, document, None, None, None)

    try:
        await retry_forever(
            "dead letter", lambda: send(dead_letter_document(message, kind, reason)), worker.stopping, worker.health
        )
    except Exception as exc:
        if is_transient(exc):
            raise
        # The broker refused the letter itself (a record near the size limit grows when wrapped): park its
        # head rather than nothing, and never let the letter stall the partition.
        logger.error("dead letter refused (%r); parking a truncated copy", exc)
        short = dead_letter_document(message, kind, reason, TRUNCATED_VALUE_CHARS)
        try:
            await retry_forever("dead letter", lambda: send(short), worker.stopping, worker.health)
        except Exception as again:
            if is_transient(again):
                raise
            logger.error("dead letter for offset %d lost: %r", message.offset, again)

"""The dead-letter topic: a record no agent can use is parked there with the reason, and the agent goes on."""

import logging
from typing import Any

import orjson

from models.events import utc_now
from streams.app import Worker
from streams.metrics import DEAD_LETTERS
from streams.retry import retry_forever

logger = logging.getLogger(__name__)


async def dead_letter(worker: Worker, message: Any, reason: str) -> None:
    DEAD_LETTERS.labels(message.topic.rsplit(".", 1)[-1]).inc()
    logger.warning("dead-lettering offset %d: %s", message.offset, reason, extra={"offset": message.offset})
    document = {
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "dead_lettered_at": utc_now(),
        "key": (message.key or b"").decode(errors="replace"),
        "value": (message.value or b"").decode(errors="replace"),
    }
    await retry_forever(
        "dead letter",
        lambda: worker.app.producer.send_and_wait(
            worker.dead_letter_topic.get_topic_name(), message.key, orjson.dumps(document), None, None, None
        ),
        worker.stopping,
    )

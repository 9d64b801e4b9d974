"""A failure is transient (a dependency's: wait and retry) or permanent for the event (park it): with fakes,
the retry keeps going only for transient kinds, reports not ready meanwhile, and never retries a refusal."""

import psycopg2
import psycopg2.errors
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    UnknownTopicOrPartitionError,
)
from faust.exceptions import ProducerSendError
from redis import exceptions as redis_errors

from streams.failures import DeadLetterKind, describe, is_transient, permanent_kind
from streams.health import WorkerHealth
from streams.retry import ShuttingDown, retry_forever


def _caused_by(outer: Exception, cause: Exception) -> Exception:
    outer.__cause__ = cause
    return outer


TRANSIENT = [
    redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.ResponseError("LOADING Redis is loading the dataset in memory"),
    redis_errors.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
    psycopg2.OperationalError("server closed the connection unexpectedly"),
    psycopg2.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg2.InterfaceError("connection already closed"),
    TimeoutError(),  # asyncio.TimeoutError: aiopg's pool timeout
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]"),
    KafkaTimeoutError(),
    NotLeaderForPartitionError(),
    UnknownTopicOrPartitionError(),  # metadata not propagated yet: a missing topic is an outage, not the event's
    _caused_by(ProducerSendError("Error while sending"), KafkaConnectionError("broker down")),
]

PERMANENT = [
    (psycopg2.errors.UntranslatableCharacter("\\u0000 cannot be converted to text."), DeadLetterKind.STORE_REFUSED),
    (psycopg2.errors.CheckViolation("new row violates check constraint"), DeadLetterKind.STORE_REFUSED),
    (psycopg2.errors.UndefinedColumn("column does not exist"), DeadLetterKind.STORE_REFUSED),
    (ValueError("A string literal cannot contain NUL (0x00) characters."), DeadLetterKind.STORE_REFUSED),
    (
        redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
        DeadLetterKind.PROJECTION_REFUSED,
    ),
    (redis_errors.DataError("Invalid input of type: 'dict'"), DeadLetterKind.PROJECTION_REFUSED),
    (_caused_by(ProducerSendError("Error while sending"), MessageSizeTooLargeError()), DeadLetterKind.BUG),
    (KeyError("price_cents"), DeadLetterKind.BUG),
    (RuntimeError("a bug on one event"), DeadLetterKind.BUG),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_dependency_failures_are_transient(exc: Exception) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(("exc", "kind"), PERMANENT, ids=lambda e: type(e).__name__)
def test_refusals_and_bugs_are_permanent_for_the_event(exc: Exception, kind: DeadLetterKind) -> None:
    assert not is_transient(exc)
    assert permanent_kind(exc) is kind


def test_a_value_refusal_stays_permanent_even_when_raised_while_handling_a_dependency_error() -> None:
    refusal = psycopg2.errors.UntranslatableCharacter("\\u0000 cannot be converted to text.")
    refusal.__context__ = ConnectionResetError()
    assert not is_transient(refusal)


def test_a_reason_is_one_bounded_line() -> None:
    reason = describe(ValueError("first line\nsecond line " + "x" * 1000))
    assert reason.startswith("ValueError: first line second line") and "\n" not in reason and len(reason) == 500


class Flaky:
    """Fails with the given errors in turn, then succeeds; records the health seen on each attempt."""

    def __init__(self, health: WorkerHealth, *errors: Exception) -> None:
        self.health = health
        self.errors = list(errors)
        self.attempts = 0
        self.waiting_seen: list[list[str]] = []

    async def __call__(self) -> str:
        self.attempts += 1
        self.waiting_seen.append(self.health.retries())
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_transient_failures_are_retried_until_the_write_goes_through_not_ready_meanwhile() -> None:
    health = WorkerHealth()
    attempt = Flaky(health, redis_errors.ConnectionError("down"), psycopg2.OperationalError("down"))
    assert await retry_forever("projection", attempt, health=health) == "done"
    assert attempt.attempts == 3
    assert attempt.waiting_seen == [[], ["projection"], ["projection"]]
    assert health.retries() == []  # ready again


async def test_a_refusal_is_raised_at_once_and_never_retried() -> None:
    health = WorkerHealth()
    refusal = psycopg2.errors.UntranslatableCharacter("\\u0000 cannot be converted to text.")
    attempt = Flaky(health, refusal, refusal)
    with pytest.raises(psycopg2.DataError):
        await retry_forever("audit", attempt, health=health)
    assert attempt.attempts == 1
    assert health.retries() == []


async def test_a_retry_gives_up_when_the_worker_is_stopping() -> None:
    attempt = Flaky(WorkerHealth(), KafkaConnectionError("down"))
    with pytest.raises(ShuttingDown):
        await retry_forever("dead letter", attempt, stopping=lambda: True)

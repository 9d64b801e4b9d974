"""What a failure means for the event at hand: wait for a dependency to come back, or park the event.

A transient failure is about a dependency, not the event: a connection refused, reset or timed out, a server
still loading or out of memory, a pool exhausted, Kafka without a leader. The event is fine; retrying it later
succeeds, so the agent waits (with back-off) and the event waits in Kafka.

Everything else is permanent for that event: PostgreSQL refusing a value (DataError, IntegrityError,
ProgrammingError: "\\u0000 cannot be converted to text"), psycopg2 refusing a NUL in a string parameter, Redis
refusing a value (ResponseError), or any other exception raised while handling one event, which is a bug on
that event. Retrying cannot help, so the event goes to the dead-letter topic and its partition moves on.
"""

import asyncio
import enum
import socket

import psycopg2
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faust.exceptions import ConsumerNotStarted, NotReady
from redis import exceptions as redis_errors

# Redis errors about the server's state, not the value sent: they pass once the server recovers.
_REDIS_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # BusyLoadingError, MaxConnectionsError and AuthenticationError included
    redis_errors.TimeoutError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,  # a replica during a failover
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
)
_RESPONSE_TRANSIENT_PREFIXES = ("LOADING", "MISCONF", "MASTERDOWN", "NOREPLICAS", "BUSY ")

_TRANSIENT: tuple[type[BaseException], ...] = (
    *_REDIS_TRANSIENT,
    # PostgreSQL: the connection kinds (server gone, shutting down, statement cancelled, deadlock or
    # serialization failure) and a connection closed under the client.
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotReady,
    ConsumerNotStarted,
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,  # asyncio.TimeoutError is TimeoutError: aiopg's pool and connect timeouts
    socket.gaierror,  # a name that does not resolve yet (a restarting service in a cluster)
)


class DeadLetterKind(enum.StrEnum):
    """Why a record was parked: the `kind` label of the dead-letter metric (bounded)."""

    UNDECODABLE = "undecodable"  # not JSON, not UTF-8, or not a valid event
    UNKNOWN_CITY = "unknown_city"
    APPLY_FAILED = "apply_failed"  # applying the event to the state raised: a bug on that event
    STORE_REFUSED = "store_refused"  # PostgreSQL refused a value
    PROJECTION_REFUSED = "projection_refused"  # Redis refused a value
    UNKNOWN_ORDER = "unknown_order"
    BUG = "bug"  # anything else an event made the worker raise


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it: Faust wraps Kafka errors (ProducerSendError from KafkaError)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_transient_one(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    if isinstance(exc, redis_errors.ResponseError):
        return str(exc).startswith(_RESPONSE_TRANSIENT_PREFIXES)
    return False


def is_transient(exc: BaseException) -> bool:
    """True when the failure is a dependency's, so the same event will succeed once it is back."""
    if isinstance(exc, asyncio.CancelledError):
        return False
    head = exc
    # Value refusals are decided by the exception raised, whatever context it was raised in.
    if isinstance(head, psycopg2.DataError | psycopg2.IntegrityError | psycopg2.ProgrammingError):
        return False
    return any(_is_transient_one(e) for e in _chain(exc))


def permanent_kind(exc: BaseException) -> DeadLetterKind:
    """The dead-letter kind of a permanent failure, by the dependency that refused."""
    if isinstance(exc, psycopg2.Error) or (isinstance(exc, ValueError) and "NUL" in str(exc)):
        return DeadLetterKind.STORE_REFUSED  # psycopg2 refuses NUL in a str parameter with a ValueError
    if isinstance(exc, redis_errors.RedisError):
        return DeadLetterKind.PROJECTION_REFUSED
    return DeadLetterKind.BUG


def describe(exc: BaseException) -> str:
    """One line for a dead letter's reason: the exception's type and message, bounded."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]

"""The pods' event loop: uvloop, repaired so a PostgreSQL that refuses connections gives aiopg's own error every
time (a 503 in the pods), never uvloop's "the handler is closed" for a descriptor aiopg left registered."""

import socket

import aiopg
import psycopg2
import pytest

from api.processes import PodLoop


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


def test_connections_refused_again_and_again_each_fail_as_postgresql_errors() -> None:
    dsn = f"host=127.0.0.1 port={closed_port()} dbname=feastflow user=feastflow connect_timeout=2"

    async def attempts() -> list[str]:
        failures = []
        for _ in range(6):  # each new socket gets the descriptor number the failed one had
            with pytest.raises(Exception) as refused:
                await aiopg.connect(dsn, timeout=2)
            failures.append(type(refused.value).__name__)
        return failures

    loop = PodLoop()
    try:
        failures = loop.run_until_complete(attempts())
    finally:
        loop.close()

    assert failures == [psycopg2.OperationalError.__name__] * 6

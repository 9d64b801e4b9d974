"""PostgreSQL transactions on aiopg's pooled connections."""

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiopg


@asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[aiopg.Cursor]:
    """BEGIN ... COMMIT on one pooled connection (aiopg runs in autocommit); ROLLBACK when the block raises."""
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("BEGIN")
        try:
            yield cur
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(Exception):  # a broken connection is rolled back by the server
                    await cur.execute("ROLLBACK")
            raise
        await cur.execute("COMMIT")

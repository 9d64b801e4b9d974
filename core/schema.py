"""Versioned SQL migrations, applied in order, each once, under an advisory lock so pods can race safely."""

import logging
from pathlib import Path

import aiopg

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x_FEA5_7F10


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now: list[str] = []
    async with aiopg.connect(dsn) as conn, conn.cursor() as cur:
        await cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await cur.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                if path.name in done:
                    continue
                await cur.execute("BEGIN")
                await cur.execute(path.read_text())
                await cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                await cur.execute("COMMIT")
                logger.info("applied migration %s", path.name)
                applied_now.append(path.name)
        finally:
            await cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now

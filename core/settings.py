"""Every setting, declared once: its name, type, local default, environment variable and what it is for.

`Settings(...)` is a plain frozen value (tests build it with keywords; nothing reads the environment);
`Settings.from_env()` reads each setting's `FEASTFLOW_*` variable and fails at start, naming the variable,
when a value cannot be read. Run `python -m core.settings` for the table the README shows.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from models.cities import DEFAULT_CITIES, City, parse_cities
from models.handover import PROBE_CITY

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_DSN = "dbname=feastflow user=feastflow password=feastflow host=127.0.0.1 port=5432"
ENV_PREFIX = "FEASTFLOW_"

T = TypeVar("T")


class InvalidSetting(ValueError):
    """A `FEASTFLOW_*` variable whose text is not a value of its setting's type."""


@dataclass(frozen=True, slots=True)
class Variable:
    """Where one setting comes from: the environment variable that sets it and how its text is read."""

    field: str
    name: str
    description: str
    default: Any
    read: Callable[[str], Any]


def setting(default: T, description: str, *, env: str = "", read: Callable[[str], T] | None = None) -> T:
    """A settings field: `env` is the variable's name after FEASTFLOW_ (default: the field's name in capitals);
    `read` turns its text into a value (default: by the field's type)."""
    return field(default=default, metadata={"env": env, "description": description, "read": read})


def _flag(text: str) -> bool:
    if text not in ("0", "1", ""):
        raise ValueError("expected 1 or 0")
    return text == "1"


def _cities(text: str) -> tuple[City, ...]:
    return parse_cities(text) if text else DEFAULT_CITIES


READ_BY_TYPE: dict[Any, Callable[[str], Any]] = {str: str, int: int, float: float, bool: _flag, Path: Path}


@dataclass(frozen=True, slots=True)
class Settings:
    namespace: str = setting("feastflow", "prefix of every topic, consumer group, Redis key and schema")
    kafka_bootstrap: str = setting("127.0.0.1:9092", "Kafka bootstrap servers", env="KAFKA")
    redis_url: str = setting("redis://127.0.0.1:6379/0", "Redis: projections, change feeds, event status")
    pg_dsn: str = setting(DEFAULT_PG_DSN, "PostgreSQL (libpq DSN): audit trail and orders")
    cities: tuple[City, ...] = setting(
        DEFAULT_CITIES,
        "cities served, `code:Name:CUR[:launching],...` (launching: listed, no menu yet); one city is one log",
        read=_cities,
    )
    partitions: int = setting(6, "partitions of every topic (`feastflow topics`)")
    replication_factor: int = setting(1, "replication factor of every topic")
    jwt_secret: str = setting(
        "", "token signing secret; else the first key of FEASTFLOW_JWT_KEYS, else <data dir>/jwt-secret"
    )
    jwt_keys: str = setting("", "`kid:secret,...` for key rotation: the first key signs, every key verifies")
    auth_failures_max: int = setting(30, "refused tokens per client per window before 429 auth_throttled")
    auth_failures_window_s: float = setting(60.0, "window of the failed sign-in count, seconds")
    trusted_proxies: str = setting("127.0.0.0/8,::1/128", "proxies whose X-Forwarded-For names the client")
    data_dir: Path = setting(
        REPO_ROOT / ".data", "local state: worker tables, releases, logs, the local secret", env="DATA"
    )
    feed_maxlen: int = setting(10_000, "entries kept in each city's change feed (resume window)")
    admin_rate_per_second: int = setting(200, "admin writes per second per subject", env="ADMIN_RATE")
    order_rate_per_second: int = setting(5, "orders per second per customer", env="ORDER_RATE")
    max_body_bytes: int = setting(2 * 1024 * 1024, "largest request body an API pod accepts, bytes")
    fetch_max_wait_ms: int = setting(20, "how long the broker may hold a worker's fetch, ms")
    broker_max_poll_records: int = setting(500, "records a worker takes per poll", env="MAX_POLL_RECORDS")
    commit_interval_s: float = setting(0.5, "how often a worker commits its offsets, seconds")
    sse_ping_s: float = setting(10.0, "SSE keep-alive comment interval, seconds")
    sse_max_pending_bytes: int = setting(4 * 1024 * 1024, "unsent bytes before a slow SSE client must reconnect")
    sse_coalesce_ms: float = setting(
        40.0, "the longest an SSE feed holds the next changes back while a client's earlier write is still unsent, ms"
    )
    drain_s: float = setting(5.0, "how long a stopping API pod lets in-flight requests finish, seconds")
    pre_stop_s: float = setting(0.0, "how long a stopping API pod keeps serving while unready, seconds")
    static_membership: bool = setting(False, "1: the worker is a static Kafka group member, named after the worker")
    api_host: str = setting("127.0.0.1", "address the API pod listens on")
    api_port: int = setting(8081, "port the API pod listens on")
    api_processes: int = setting(1, "API processes in one pod, sharing the port (SO_REUSEPORT)")
    worker_web_host: str = setting("127.0.0.1", "address of the worker's operator views and /metrics")
    worker_web_port: int = setting(6066, "port of the worker's operator views and /metrics")
    worker_name: str = setting("worker-1", "this worker's name: its table folder and static member id")
    worker_service: str = setting("all", "the stream service this worker runs: all, catalog, orders or shadow")
    shadow_label: str = setting("candidate", "a shadow worker's label: its consumer group and changelogs")
    worker_handover: bool = setting(
        True, "1: a new worker generation takes the log over at markers; 0: project at once (several pods)"
    )
    worker_generation: str = setting(
        "", "a worker generation's label: its consumer group and changelogs (a rollout's successor gets its own)"
    )
    handover_proof_timeout_s: float = setting(
        120.0, "a successor whose catch-up stalls, or not proven right once caught up, this long is refused, seconds"
    )
    handover_release_timeout_s: float = setting(
        5.0, "how long a successor waits for its predecessor to finish up to the handover marker, seconds"
    )
    shadow_expect: str = setting("", "price changes a pricing candidate declares (JSON), checked in shadow")
    track_file: str = setting("", "file naming the pod's Argo Rollouts track; shadow runs the candidate")
    stuck_after_s: float = setting(60.0, "a worker on one record this long stops being live (/feastflow/live/)")
    # Pod limits (api.limits, api.server); the client is found through `trusted_proxies`.
    limits_exempt: str = setting("127.0.0.0/8,::1/128", "clients that skip the per-client limits")
    sse_streams_per_client: int = setting(20, "concurrent SSE streams per client before 429 too_many_streams")
    sse_max_clients: int = setting(5000, "SSE streams per API process before 503 pod_full")
    read_rate_per_second: float = setting(20.0, "GETs per second per client (token bucket)", env="READ_RATE")
    read_burst: int = setting(40, "burst of the per-client GET token bucket")
    header_timeout_s: float = setting(10.0, "a request head not complete by then gets 408, seconds")
    body_timeout_s: float = setting(10.0, "a request body not complete by then gets 408, seconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings a process started with `environ` (default: this process's environment) runs with."""
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable in variables():
            text = source.get(variable.name)
            if text is None:
                continue
            try:
                values[variable.field] = variable.read(text)
            except ValueError as error:
                raise InvalidSetting(f"{variable.name}={text!r}: {error}") from None
        settings = cls(**values)
        if not settings.jwt_secret:
            fallback = _first_key_secret(settings.jwt_keys) or _local_secret(settings.data_dir)
            return replace(settings, jwt_secret=fallback)
        return settings

    def worker_data_dir(self, group: str, worker_name: str | None = None) -> Path:
        """A worker's RocksDB tables: per consumer group, so a pod that changes role (shadow -> catalog)
        never opens another group's stores and changelog offsets."""
        return self.data_dir / "workers" / group / (worker_name or self.worker_name)

    def city(self, code: str) -> City | None:
        """A served city, or the handover probe's city (models.handover), which no city list shows."""
        if code == PROBE_CITY.code:
            return PROBE_CITY
        return next((c for c in self.cities if c.code == code), None)

    @property
    def city_codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.cities)


def _variable(spec: Field[Any]) -> Variable:
    read = spec.metadata["read"] or READ_BY_TYPE[spec.type]
    name = ENV_PREFIX + (spec.metadata["env"] or spec.name.upper())
    return Variable(spec.name, name, spec.metadata["description"], spec.default, read)


def variables() -> tuple[Variable, ...]:
    return tuple(_variable(spec) for spec in fields(Settings))


def _first_key_secret(keys_spec: str) -> str:
    """FEASTFLOW_JWT_KEYS="kid1:secret1,kid2:secret2": the first key signs (core.tokens.KeyRing)."""
    return keys_spec.split(",")[0].partition(":")[2].strip()


def _local_secret(data_dir: Path) -> str:
    """The local stack's signing secret: generated by `make run` into the data folder, never committed."""
    secret_file = data_dir / "jwt-secret"
    if secret_file.exists():
        return secret_file.read_text().strip()
    return ""


def as_text(value: Any) -> str:
    """A setting's value written as its environment variable would carry it."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(f"{c.code}:{c.name}:{c.currency}" for c in value)
    return str(value)


def markdown_table() -> str:
    rows = ["| variable | default | what it sets |", "|---|---|---|"]
    for variable in variables():
        default = as_text(variable.default).replace(str(REPO_ROOT), "<repo>")
        rows.append(f"| `{variable.name}` | {f'`{default}`' if default else ''} | {variable.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())

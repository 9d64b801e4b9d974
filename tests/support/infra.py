"""A private set of Redis, PostgreSQL and Kafka for a test that kills them: started, and restarted after a
kill -9, by deploy/local/infra.sh itself (the way the local stack starts them), on its own ports and folders.

The shared services on 6379/5432/9092 are never touched. Ports are picked below the kernel's ephemeral
range: a port left free while its service is down would otherwise be taken by any client's connection or
by another test's bind-to-port-0.
"""

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import REPO_ROOT

INFRA_SH = REPO_ROOT / "deploy" / "local" / "infra.sh"
SERVICES = ("redis", "postgres", "kafka")


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def quiet_port(taken: set[int]) -> int:
    """A free port outside the ephemeral range (see the module's note)."""
    ceiling = _ephemeral_floor() - 1
    for _ in range(200):
        port = random.randint(20000, ceiling)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().split(")")[-1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _read_pid(path: Path) -> int:
    return int(path.read_text().split()[0])


@dataclass
class PrivateInfra:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="feastflow-infra-")))
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The postgres user must reach its cluster folder (pytest's own temporary folders are 0700).
        self.root.chmod(0o755)
        for name in ("redis", "postgres", "kafka", "controller"):
            self.ports[name] = quiet_port(set(self.ports.values()))
        self.data = self.root / "data"
        self.log = self.root / "infra.log"
        cached = REPO_ROOT / ".data" / "kafka" / "classpath.txt"  # what `make up` resolved (infra.sh checks it)
        if cached.exists():
            (self.data / "kafka").mkdir(parents=True, exist_ok=True)
            shutil.copy(cached, self.data / "kafka" / "classpath.txt")

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "FEASTFLOW_DATA": str(self.data),
            "FEASTFLOW_REDIS_PORT": str(self.ports["redis"]),
            "FEASTFLOW_PG_PORT": str(self.ports["postgres"]),
            "FEASTFLOW_PG_DIR": str(self.root / "pg"),
            "FEASTFLOW_KAFKA_PORT": str(self.ports["kafka"]),
            "FEASTFLOW_KAFKA_CONTROLLER_PORT": str(self.ports["controller"]),
            # A broker restarted after kill -9 on a busy two-core machine took over 60 s (infra.sh's default).
            "FEASTFLOW_KAFKA_START_TIMEOUT": "150",
        }

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.ports['redis']}/{db}"

    def pg_dsn(self, database: str = "feastflow_test") -> str:
        return f"dbname={database} user=feastflow password=feastflow host=127.0.0.1 port={self.ports['postgres']}"

    def up(self, *services: str) -> float:
        """infra.sh up (all services, or those named); seconds it took."""
        return self._infra("up", *services)

    def down(self) -> None:
        self._infra("down")

    def _infra(self, action: str, *services: str) -> float:
        started = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"--- infra.sh {action} {' '.join(services)}\n".encode())
            log.flush()
            done = subprocess.run(
                [str(INFRA_SH), action, *services], env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=180
            )
        if done.returncode != 0:
            raise RuntimeError(f"infra.sh {action} {' '.join(services)} failed:\n{self.tail()}")
        return time.monotonic() - started

    def pids(self, service: str) -> list[int]:
        """The service's processes: PostgreSQL is a postmaster and its children."""
        if service == "redis":
            return [_read_pid(self.data / "redis" / "redis.pid")]
        if service == "kafka":
            return [_read_pid(self.data / "kafka" / "kafka.pid")]
        postmaster = _read_pid(self.root / "pg" / "postmaster.pid")
        return [postmaster, *_children(postmaster)]

    def kill(self, service: str) -> None:
        """kill -9, as when the machine under it dies: no shutdown of any kind."""
        for pid in self.pids(service):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def save_logs(self, dest: Path) -> None:
        """The services' own logs, kept with the test's (the private folder goes away with close)."""
        dest.mkdir(parents=True, exist_ok=True)
        sources = [self.log, self.data / "redis" / "redis.log", self.root / "pg" / "server.log"]
        sources += sorted((self.data / "kafka" / "logs").glob("*"))
        for source in sources:
            if source.is_file():
                shutil.copy(source, dest / f"{source.parent.name}-{source.name}")

    def close(self) -> None:
        try:
            self.down()
        except RuntimeError:
            for service in SERVICES:  # whatever down could not stop
                with contextlib.suppress(OSError, ValueError, IndexError):
                    self.kill(service)
            raise
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

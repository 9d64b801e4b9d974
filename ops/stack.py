"""The local stack's processes as a rollout sees them: which units run (pid files, ports), which code each runs,
how to start one on a checkout and stop one gracefully, the gateway's routing and Prometheus' scrape targets.

A unit runs a checkout through PYTHONPATH with `python -P -m <its cli>`: `cli_module` finds the command-line
module of that checkout, so releases from before and after the package split both start.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.settings import REPO_ROOT, Settings
from core.tokens import Role, issue_token
from core.topics import consumer_group

logger = logging.getLogger(__name__)

EXIT_TIMEOUT_S = 60.0
GATEWAY_DRAIN_S = 7.0
# Where a checkout keeps its command line: this layout, then the one before the foundation/ops split.
CLI_MODULES = (("ops/cli.py", "ops.cli"), ("feastflow/cli.py", "feastflow.cli"))


class RolloutFailed(Exception):
    pass


@dataclass(frozen=True)
class Unit:
    """One running process of the local stack, as its pid file and port say."""

    name: str  # pid file name: worker, api-1, api-2, ...
    pid: int
    port: int


def is_unit_command(cmdline: bytes) -> bool:
    """A unit's command line: `.venv/bin/feastflow ...` (make run) or `python -P -m <cli module> ...` (start below)."""
    return b"feastflow" in cmdline or any(module.encode() in cmdline for _, module in CLI_MODULES)


def cli_module(code: Path) -> str | None:
    """The module `python -m` runs for a checkout's command line, or None when `code` is no Feast Flow checkout."""
    return next((module for path, module in CLI_MODULES if (code / path).exists()), None)


def resolve_code(settings: Settings, ref: str | None, path: str | None) -> Path:
    if path:
        code = Path(path).resolve()
        if cli_module(code) is None:
            raise RolloutFailed(f"{code} is not a Feast Flow checkout")
        return code
    if not ref:
        return REPO_ROOT
    sha = _git("rev-parse", "--verify", f"{ref}^{{commit}}").strip()
    code = settings.data_dir / "releases" / sha[:12]
    if not code.exists():
        _git("worktree", "add", "--detach", str(code), sha)
    return code


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RolloutFailed(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.data_dir / "run"
        self.log_dir = settings.data_dir / "logs"

    def api_units(self) -> list[Unit]:
        ports = self._api_ports()
        units = []
        for index, port in enumerate(ports, start=1):
            pid = self._pid(f"api-{index}")
            if pid is None:
                raise RolloutFailed(f"api-{index} is not running; start the stack first (make run)")
            units.append(Unit(f"api-{index}", pid, port))
        return units

    def worker_unit(self) -> tuple[Unit, str]:
        pid = self._pid("worker")
        if pid is None:
            raise RolloutFailed("the worker is not running; start the stack first (make run)")
        env = self._worker_env()
        return Unit("worker", pid, int(env.get("FEASTFLOW_WORKER_WEB_PORT", "6066"))), env.get(
            "FEASTFLOW_WORKER_NAME", "worker-1"
        )

    def start(self, name: str, command: str, code: Path, extra_env: dict[str, str]) -> int:
        """Start a detached unit (its own session, output appended to its log) running `code`.

        `-P` keeps the working directory off sys.path, so PYTHONPATH decides which code runs.
        """
        # The data folder (its signing secret, logs, run files) is this stack's whatever code runs.
        env = {**os.environ, "FEASTFLOW_DATA": str(self.settings.data_dir), **extra_env, "PYTHONPATH": str(code)}
        log = str(self.log_dir / f"{name}.log")
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-P", "-m", cli_module(code) or "ops.cli", command],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        # Until it is recorded as the unit, only this says it runs: a rollout killed part-way (a timeout, ^C)
        # would leave it running past `make stop`, still writing under its own fencing epoch.
        started = self.run_dir / "started"
        started.mkdir(parents=True, exist_ok=True)
        (started / f"{name}-{pid}.pid").write_text(f"{pid}\n")
        return pid

    def record(self, name: str, pid: int) -> None:
        (self.run_dir / f"{name}.pid").write_text(f"{pid}\n")

    def record_api_ports(self, ports: list[int]) -> None:
        (self.run_dir / "api-ports").write_text(" ".join(map(str, ports)) + "\n")

    def scrape(self, kind: str, unit: str, port: int) -> None:
        """Tell the local Prometheus to scrape a unit (deploy/local/prometheus.sh reads this folder)."""
        targets = self.settings.data_dir / "prometheus" / "targets"
        targets.mkdir(parents=True, exist_ok=True)
        staged = targets / f".{kind}-{port}.tmp"
        staged.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"unit": unit}}]) + "\n")
        staged.replace(targets / f"{kind}-{port}.json")

    def unscrape(self, kind: str, port: int) -> None:
        (self.settings.data_dir / "prometheus" / "targets" / f"{kind}-{port}.json").unlink(missing_ok=True)

    def record_worker(self, name: str, port: int, generation: str) -> None:
        (self.run_dir / "worker.env").write_text(
            f"FEASTFLOW_WORKER_NAME={name}\nFEASTFLOW_WORKER_WEB_PORT={port}\nFEASTFLOW_WORKER_GENERATION={generation}\n"
        )

    def worker_generation(self) -> str:
        return self._worker_env().get("FEASTFLOW_WORKER_GENERATION", "")

    async def route_gateway_to(self, ports: list[int]) -> None:
        """Point the gateway at these pods, and return once no gateway worker routes by the old list.

        nginx's workers from before a reload finish their requests (up to worker_shutdown_timeout, 5 s)
        still routing to the old pods; only when they are gone may an old pod stop."""
        old_workers = self._gateway_workers()
        env = {**os.environ, "FEASTFLOW_API_PORTS": " ".join(map(str, ports))}
        reload = await asyncio.create_subprocess_exec(
            str(REPO_ROOT / "deploy/local/gateway.sh"),
            "up",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await reload.communicate()
        if reload.returncode != 0:
            raise RolloutFailed(f"gateway reload failed: {output.decode().strip()}")
        for _ in range(int(GATEWAY_DRAIN_S * 10)):
            if not any(process_alive(pid) for pid in old_workers):
                return
            await asyncio.sleep(0.1)
        logger.warning("gateway workers %s still running %.0fs after the reload", old_workers, GATEWAY_DRAIN_S)

    def _gateway_workers(self) -> list[int]:
        try:
            master = (self.settings.data_dir / "nginx" / "nginx.pid").read_text().strip()
        except FileNotFoundError:
            return []
        workers = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if stat.read_text().split(")")[-1].split()[1] == master:
                    workers.append(int(stat.parent.name))
            except (OSError, IndexError):
                continue
        return workers

    def _api_ports(self) -> list[int]:
        saved = self.run_dir / "api-ports"
        spec = os.environ.get("FEASTFLOW_API_PORTS") or (saved.read_text() if saved.exists() else "8081 8082")
        return [int(p) for p in spec.replace(",", " ").split()]

    def _worker_env(self) -> dict[str, str]:
        saved = self.run_dir / "worker.env"
        if not saved.exists():
            return {}
        return dict(line.split("=", 1) for line in saved.read_text().split() if "=" in line)

    def worker_data_dir(self, worker_name: str, generation: str) -> Path:
        """The local worker runs every service (`all`), in the catalog service's group of its generation."""
        group = consumer_group(self.settings.namespace, "all", generation=generation)
        return self.settings.worker_data_dir(group, worker_name)

    def admin_headers(self) -> dict[str, str]:
        token = issue_token(self.settings.jwt_secret, Role.ADMIN, "rollout", ttl_s=600)
        return {"Authorization": f"Bearer {token}"}

    def pid_of(self, name: str) -> int | None:
        return self._pid(name)

    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_alive(pid) else None


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):  # gone before the open, or between the open and the read (ESRCH)
        return False
    return state != "Z"


def free_port(avoid: set[int]) -> int:
    for port in range(8090, 8200):
        if port in avoid:
            continue
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RolloutFailed("no free port between 8090 and 8199")


async def stop_gracefully(pid: int, name: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while process_alive(pid):
        if time.monotonic() > deadline:
            logger.warning("%s did not exit within %.0fs; killing it", name, EXIT_TIMEOUT_S)
            os.killpg(pid, signal.SIGKILL)
            return
        await asyncio.sleep(0.1)


async def stop_restarted(current: int | None, unit: Unit, name: str) -> None:
    """The supervisor (ops.supervisor) restarts a unit that crashed while we replaced it; the pid file
    then names that restart, not `unit`. Recording the successor took it out of supervision: stop it too."""
    if current is not None and current != unit.pid:
        logger.warning("%s crashed and was restarted (pid %d) during the rollout; stopping that one too", name, current)
        await stop_gracefully(current, f"{name} (restarted)")


def code_of(pid: int) -> Path:
    """The checkout a running unit runs: its PYTHONPATH (set by rollouts), else this checkout (set by make run)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return REPO_ROOT
    paths = [entry.removeprefix(b"PYTHONPATH=").decode() for entry in environ if entry.startswith(b"PYTHONPATH=")]
    return Path(paths[0]) if paths and paths[0] else REPO_ROOT

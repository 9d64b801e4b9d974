"""A rolling deploy of the local stack, done the way a Deployment with maxSurge 1, maxUnavailable 0 does it.

For each API pod: start its successor on a fresh port, wait until it is ready, put it in the gateway and take
the old one out, then SIGTERM the old one (it drains: SSE clients are told to reconnect, in-flight requests
finish) and wait for it to exit. For the worker: start a successor under a new member name, wait until its
tables are recovered and it is ready, then SIGTERM the old one, which commits and leaves the group so the
successor takes its partitions over; events arriving meanwhile wait in Kafka.

The code to roll to is the current checkout, another checkout (`--path`), or a git ref (`--ref`, checked out
into the data folder). Pods run it with this checkout's virtualenv.
"""

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from feastflow.settings import REPO_ROOT, Settings

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 60.0
GATEWAY_DRAIN_S = 7.0


class RolloutFailed(Exception):
    pass


@dataclass(frozen=True)
class Unit:
    """One running process of the local stack, as its pid file and port say."""

    name: str  # pid file name: worker, api-1, api-2, ...
    pid: int
    port: int


def resolve_code(settings: Settings, ref: str | None, path: str | None) -> Path:
    if path:
        code = Path(path).resolve()
        if not (code / "feastflow" / "cli.py").exists():
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
        env = {**os.environ, **extra_env, "PYTHONPATH": str(code)}
        log = str(self.log_dir / f"{name}.log")
        return os.posix_spawn(
            sys.executable,
            [sys.executable, "-P", "-m", "feastflow.cli", command],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )

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

    def record_worker(self, name: str, port: int) -> None:
        (self.run_dir / "worker.env").write_text(f"FEASTFLOW_WORKER_NAME={name}\nFEASTFLOW_WORKER_WEB_PORT={port}\n")

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
            if not any(_alive(pid) for pid in old_workers):
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

    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
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


async def wait_ready(url: str, pid: int, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise RolloutFailed(f"{name} exited before it became ready")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    raise RolloutFailed(f"{name} was not ready within {READY_TIMEOUT_S:.0f}s")


async def stop_gracefully(pid: int, name: str) -> None:
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while _alive(pid):
        if time.monotonic() > deadline:
            logger.warning("%s did not exit within %.0fs; killing it", name, EXIT_TIMEOUT_S)
            os.killpg(pid, signal.SIGKILL)
            return
        await asyncio.sleep(0.1)


async def roll_api_pods(stack: LocalStack, code: Path, say: "Say") -> None:
    units = stack.api_units()
    ports = [unit.port for unit in units]
    for unit in units:
        port = free_port(set(ports))
        pid = stack.start(unit.name, "api", code, {"FEASTFLOW_API_PORT": str(port)})
        await wait_ready(f"http://127.0.0.1:{port}/readyz", pid, f"new {unit.name}")
        stack.scrape("api", unit.name, port)
        say(f"{unit.name}: new pod ready on :{port} (pid {pid})")
        ports = [port if p == unit.port else p for p in ports]
        await stack.route_gateway_to(ports)
        stack.record(unit.name, pid)
        stack.record_api_ports(ports)
        say(f"{unit.name}: gateway routes to {ports} only; draining the old pod on :{unit.port}")
        await stop_gracefully(unit.pid, f"old {unit.name}")
        stack.unscrape("api", unit.port)
        say(f"{unit.name}: old pod (pid {unit.pid}) exited")


async def roll_worker(stack: LocalStack, code: Path, say: "Say") -> None:
    unit, name = stack.worker_unit()
    successor = _next_name(name)
    port = unit.port + 1 if unit.port < 6075 else 6066
    pid = stack.start(
        "worker", "worker", code, {"FEASTFLOW_WORKER_NAME": successor, "FEASTFLOW_WORKER_WEB_PORT": str(port)}
    )
    await wait_ready(f"http://127.0.0.1:{port}/feastflow/ready/", pid, f"worker {successor}")
    stack.scrape("worker", "worker", port)
    say(f"worker: {successor} ready on :{port} (pid {pid}); stopping {name}")
    stack.record("worker", pid)
    stack.record_worker(successor, port)
    await stop_gracefully(unit.pid, f"worker {name}")
    stack.unscrape("worker", unit.port)
    shutil.rmtree(stack.settings.data_dir / "workers" / name, ignore_errors=True)  # its tables live in changelogs
    say(f"worker: {name} (pid {unit.pid}) committed, left the group and exited")


def _next_name(name: str) -> str:
    base, _, generation = name.rpartition("-g")
    return f"{base}-g{int(generation) + 1}" if base and generation.isdigit() else f"{name}-g2"


class Say:
    def __call__(self, line: str) -> None:
        print(f"rollout: {line}", flush=True)


async def rollout(settings: Settings, ref: str | None, path: str | None, only: str | None = None) -> None:
    code = resolve_code(settings, ref, path)
    say = Say()
    say(f"rolling to {code}")
    stack = LocalStack(settings)
    if only in (None, "api"):
        await roll_api_pods(stack, code, say)
    if only in (None, "worker"):
        await roll_worker(stack, code, say)
    say("done")

"""A rolling deploy of the local stack, done the way a Deployment with maxSurge 1, maxUnavailable 0 does it,
with automatic rollback.

For each API pod: start its successor on a fresh port, wait until it is ready (within a deadline), bake it —
for a few seconds it must stay up and answer real reads on its own port before any customer reaches it — then
put it in the gateway, take the old one out, SIGTERM the old one (it drains: SSE clients are told to
reconnect, in-flight requests finish) and wait for it to exit. For the worker: start a successor under a new
member name, wait until its tables are recovered and it is ready, bake it, then SIGTERM the old one, which
commits and leaves the group so the successor takes its partitions over; events wait in Kafka meanwhile.
After the last unit the service objectives (error ratio, change freshness) are watched in the local
Prometheus for a while, and the new units must stay up.

If anything fails — a unit not ready in time, crashing, failing its reads, the objectives degrading — the
rollout stops, puts the previous version back on every unit it had replaced (the same zero-downtime steps),
marks the release failed with the reason, and exits non-zero. Every rollout and rollback is a numbered
release (feastflow.releases); `feastflow rollback [--to N]` returns to an earlier one.

The code to roll to is the current checkout, another checkout (`--path`), or a git ref (`--ref`, checked out
into the data folder). Pods run it with this checkout's virtualenv.
"""

import asyncio
import contextlib
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

from api.auth import Role, issue_token
from feastflow.prometheus import PrometheusUnavailable, instant
from feastflow.releases import FAILED, SUCCEEDED, Release, ReleaseHistory
from feastflow.settings import REPO_ROOT, Settings
from streams.topics import consumer_group

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 60.0
GATEWAY_DRAIN_S = 7.0


class RolloutFailed(Exception):
    pass


@dataclass(frozen=True)
class Guardrails:
    """What a new version must show before and after customers reach it."""

    ready_timeout_s: float = READY_TIMEOUT_S
    bake_s: float = 5.0  # up and answering on its own port before it is routed (or before the old worker stops)
    watch_s: float = 15.0  # after the last unit: the objectives must hold and the new units stay up this long
    max_error_ratio: float = 0.01  # 5xx share of API requests over the last minute
    max_freshness_s: float = 10.0  # p99 change freshness over the last minute; a worker handover pauses it ~4 s
    prometheus: str | None = "http://127.0.0.1:9090"  # None: objectives are not watched (and the rollout says so)


@dataclass(frozen=True)
class Replaced:
    """A unit the rollout replaced: what it ran before, to put it back."""

    name: str  # api-1, api-2, worker
    previous_code: Path


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
        # The data folder (its signing secret, logs, run files) is this stack's whatever code runs.
        env = {**os.environ, "FEASTFLOW_DATA": str(self.settings.data_dir), **extra_env, "PYTHONPATH": str(code)}
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

    def worker_data_dir(self, worker_name: str) -> Path:
        """The local worker runs every service (`all`), in the catalog service's group."""
        return self.settings.worker_data_dir(consumer_group(self.settings.namespace, "all"), worker_name)

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


async def wait_ready(url: str, pid: int, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if not process_alive(pid):
                raise RolloutFailed(f"{name} exited before it became ready")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.25)
    raise RolloutFailed(f"{name} was not ready within {timeout_s:.0f}s")


async def bake(
    pid: int, name: str, base: str, expected: dict[str, int], seconds: float, headers: dict[str, str] | None = None
) -> None:
    """The new unit must stay alive and answer every path as expected, again and again, for `seconds`."""
    started = time.monotonic()
    async with aiohttp.ClientSession(base, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            for path, wanted in expected.items():
                if not process_alive(pid):
                    raise RolloutFailed(f"{name} exited {time.monotonic() - started:.1f}s after it was ready")
                try:
                    async with session.get(path) as response:
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise RolloutFailed(f"{name} did not answer GET {path}: {exc!r}") from None
                if status != wanted:
                    raise RolloutFailed(f"{name} answered {status} to GET {path} (expected {wanted})")
            if time.monotonic() - started >= seconds:
                return
            await asyncio.sleep(0.5)


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
    """The supervisor (feastflow.supervisor) restarts a unit that crashed while we replaced it; the pid file
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


def api_checks(settings: Settings) -> dict[str, int]:
    """Reads a new API pod must answer before customers reach it: probes, public reads, and an authenticated
    admin read (a pod that cannot verify tokens would fail every admin change and order)."""
    return {
        "/readyz": 200,
        "/v1/cities": 200,
        f"/v1/cities/{settings.city_codes[0]}/menu": 200,
        "/v1/admin/events/rollout-check": 404,
    }


async def replace_api_pod(stack: LocalStack, unit: Unit, code: Path, guard: Guardrails, say: "Say") -> Replaced:
    previous = code_of(unit.pid)
    ports = [u.port for u in stack.api_units()]
    port = free_port(set(ports))
    pid = stack.start(unit.name, "api", code, {"FEASTFLOW_API_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(f"{base}/readyz", pid, f"new {unit.name}", guard.ready_timeout_s)
        await bake(pid, f"new {unit.name}", base, api_checks(stack.settings), guard.bake_s, stack.admin_headers())
    except RolloutFailed:
        await stop_gracefully(pid, f"new {unit.name}")  # never routed: no customer ever reached it
        raise
    stack.scrape("api", unit.name, port)
    say(f"{unit.name}: new pod ready and baked on :{port} (pid {pid})")
    ports = [port if p == unit.port else p for p in ports]
    await stack.route_gateway_to(ports)
    restarted = stack.pid_of(unit.name)
    stack.record(unit.name, pid)
    stack.record_api_ports(ports)
    say(f"{unit.name}: gateway routes to {ports} only; draining the old pod on :{unit.port}")
    await stop_gracefully(unit.pid, f"old {unit.name}")
    await stop_restarted(restarted, unit, f"old {unit.name}")
    stack.unscrape("api", unit.port)
    say(f"{unit.name}: old pod (pid {unit.pid}) exited")
    return Replaced(unit.name, previous)


async def roll_api_pods(
    stack: LocalStack, code: Path, say: "Say", guard: Guardrails | None = None, replaced: list[Replaced] | None = None
) -> None:
    for unit in stack.api_units():
        done = await replace_api_pod(stack, unit, code, guard or Guardrails(), say)
        if replaced is not None:
            replaced.append(done)


async def roll_worker(
    stack: LocalStack, code: Path, say: "Say", guard: Guardrails | None = None, replaced: list[Replaced] | None = None
) -> None:
    guard = guard or Guardrails()
    unit, name = stack.worker_unit()
    previous = code_of(unit.pid)
    successor = _next_name(name)
    port = unit.port + 1 if unit.port < 6075 else 6066
    pid = stack.start(
        "worker", "worker", code, {"FEASTFLOW_WORKER_NAME": successor, "FEASTFLOW_WORKER_WEB_PORT": str(port)}
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/feastflow/ready/", pid, f"worker {successor}", guard.ready_timeout_s)
        # Readiness flips while the group rebalances onto the newcomer; liveness must hold throughout.
        await bake(pid, f"worker {successor}", f"http://127.0.0.1:{port}", {"/feastflow/health/": 200}, guard.bake_s)
    except RolloutFailed:
        await stop_gracefully(pid, f"worker {successor}")  # the old worker never stopped: it takes its partitions back
        shutil.rmtree(stack.worker_data_dir(successor), ignore_errors=True)
        raise
    stack.scrape("worker", "worker", port)
    say(f"worker: {successor} ready and baked on :{port} (pid {pid}); stopping {name}")
    restarted = stack.pid_of("worker")
    stack.record("worker", pid)
    stack.record_worker(successor, port)
    await stop_gracefully(unit.pid, f"worker {name}")
    await stop_restarted(restarted, unit, f"worker {name}")
    stack.unscrape("worker", unit.port)
    shutil.rmtree(stack.worker_data_dir(name), ignore_errors=True)  # its tables live in changelogs
    say(f"worker: {name} (pid {unit.pid}) committed, left the group and exited")
    if replaced is not None:
        replaced.append(Replaced("worker", previous))


async def watch_objectives(stack: LocalStack, replaced: list[Replaced], guard: Guardrails, say: "Say") -> None:
    """For `watch_s`: every replaced unit stays up, and the objectives hold in the local Prometheus."""
    if guard.watch_s <= 0 or not replaced:
        return
    if guard.prometheus is None:
        say("objectives NOT watched (no Prometheus given); only the units' liveness is checked")
    pids = {r.name: stack.pid_of(r.name) for r in replaced}
    deadline = time.monotonic() + guard.watch_s
    worst = {"error_ratio": 0.0, "freshness_p99_s": 0.0}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            for name, pid in pids.items():
                if pid is None or not process_alive(pid):
                    raise RolloutFailed(f"{name} exited after it took traffic")
            if guard.prometheus is not None:
                error_ratio = await _query(session, guard.prometheus, "feastflow:api_errors:ratio_rate1m")
                freshness = await _query(session, guard.prometheus, "feastflow:freshness_seconds:p99_1m")
                worst["error_ratio"] = max(worst["error_ratio"], error_ratio or 0.0)
                worst["freshness_p99_s"] = max(worst["freshness_p99_s"], freshness or 0.0)
                if error_ratio is not None and error_ratio > guard.max_error_ratio:
                    raise RolloutFailed(f"API error ratio {error_ratio:.1%} > {guard.max_error_ratio:.1%} (Prometheus)")
                if freshness is not None and freshness > guard.max_freshness_s:
                    limit = guard.max_freshness_s
                    raise RolloutFailed(f"change freshness p99 {freshness:.2f}s > {limit:.2f}s (Prometheus)")
            await asyncio.sleep(2.5)
    say(
        f"objectives held for {guard.watch_s:.0f}s: worst error ratio {worst['error_ratio']:.2%}, "
        f"worst freshness p99 {worst['freshness_p99_s'] * 1000:.0f} ms"
    )


async def _query(session: aiohttp.ClientSession, prometheus: str, promql: str) -> float | None:
    """Unreachable Prometheus fails the rollout: a guardrail that cannot look is not a guardrail."""
    try:
        return await instant(session, prometheus, promql)
    except PrometheusUnavailable as exc:
        raise RolloutFailed(f"cannot read the objectives: {exc}") from None


async def restore(stack: LocalStack, replaced: list[Replaced], say: "Say") -> None:
    """Put the previous version back on every replaced unit, newest first, with the same zero-downtime steps."""
    guard = Guardrails(bake_s=0.0, watch_s=0.0)
    for done in reversed(replaced):
        if done.name == "worker":
            await roll_worker(stack, done.previous_code, say, guard)
        else:
            unit = next(u for u in stack.api_units() if u.name == done.name)
            await replace_api_pod(stack, unit, done.previous_code, guard, say)
        say(f"{done.name}: back on {done.previous_code}")


def _next_name(name: str) -> str:
    base, _, generation = name.rpartition("-g")
    return f"{base}-g{int(generation) + 1}" if base and generation.isdigit() else f"{name}-g2"


class Say:
    def __init__(self, prefix: str = "rollout") -> None:
        self.prefix = prefix

    def __call__(self, line: str) -> None:
        print(f"{self.prefix}: {line}", flush=True)


async def rollout(
    settings: Settings,
    ref: str | None,
    path: str | None,
    only: str | None = None,
    guard: Guardrails | None = None,
) -> Release:
    code = resolve_code(settings, ref, path)
    return await deploy(settings, "rollout", code, ref, only, guard or Guardrails())


async def rollback(settings: Settings, to: int | None = None, guard: Guardrails | None = None) -> Release:
    """Return the stack to an earlier release: by default the last good one before the current one."""
    history = ReleaseHistory(settings.data_dir)
    current = history.last_good()
    target = history.get(to) if to is not None else history.last_good(before=current.number if current else None)
    if target is None:
        raise RolloutFailed(f"no release {to} in the history" if to else "no earlier good release to go back to")
    if to is not None and target.outcome != SUCCEEDED:
        raise RolloutFailed(f"release {to} is {target.outcome}; roll back to a release that succeeded")
    code = Path(target.code)
    if not (code / "feastflow" / "cli.py").exists():
        raise RolloutFailed(f"release {target.number}'s code at {code} is gone")
    return await deploy(settings, "rollback", code, f"release {target.number}", None, guard or Guardrails())


async def deploy(
    settings: Settings, kind: str, code: Path, ref: str | None, only: str | None, guard: Guardrails
) -> Release:
    say = Say()
    stack = LocalStack(settings)
    history = ReleaseHistory(settings.data_dir)
    units = stack.api_units() if only != "worker" else []
    history.ensure_baseline(code_of(units[0].pid) if units else code_of(stack.worker_unit()[0].pid))
    release = history.begin(kind, code, ref)
    say(f"release {release.number} ({kind}): rolling to {code} ({release.version})")
    replaced: list[Replaced] = []
    try:
        if only in (None, "api"):
            await roll_api_pods(stack, code, say, guard, replaced)
        if only in (None, "worker"):
            await roll_worker(stack, code, say, guard, replaced)
        await watch_objectives(stack, replaced, guard, say)
    except RolloutFailed as failure:
        say(f"FAILED: {failure}; putting the previous version back on {len(replaced)} replaced unit(s)")
        try:
            await restore(stack, replaced, say)
        except RolloutFailed as second:
            history.finish(release, FAILED, f"{failure}; and the rollback failed too: {second}")
            raise RolloutFailed(f"release {release.number} failed ({failure}); its rollback too: {second}") from second
        history.finish(release, FAILED, str(failure))
        raise RolloutFailed(f"release {release.number} failed and was rolled back: {failure}") from failure
    finished = history.finish(release, SUCCEEDED)
    say(f"release {release.number} succeeded")
    return finished

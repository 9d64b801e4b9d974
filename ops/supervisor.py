"""The local stack's node agent: it keeps the worker and the API pods running, as a kubelet keeps a node's pods.

The pid files in the run folder are the desired state (`deploy/local/apps.sh` writes them at `make run`, a
rollout or rollback points them at each successor before it stops the predecessor). A unit whose process exits
while its pid file still names it has crashed: it is started again with the command, environment, working
directory and log it ran with (read from /proc while it ran), after a back-off — 1 s, doubling to 30 s, back to
1 s once a run lasted 60 s. A process that exits after its pid file moved on to a successor, or was removed, was
stopped on purpose and stays stopped; so does everything while the supervisor itself is stopped, which is why
`make stop` stops it first. A canary's shadow has no pid file and is never supervised.

A worker whose build serves /feastflow/live/ is also probed there, once it has answered 200 once: failing six
probes in a row (30 s) it is stopped (SIGTERM, then SIGKILL) and so restarted. A build without that endpoint
(404) is not probed.

Each unit's pid, start time, restart count and last exit are kept in run/supervisor.json for `make status`.
"""

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

from core.settings import Settings
from ops.stack import is_unit_command, process_alive, stop_gracefully

logger = logging.getLogger(__name__)

UNIT_NAME = re.compile(r"^(worker|api-[0-9]+)$")
TICK_S = 0.5


@dataclass(frozen=True)
class BackOff:
    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0  # a run this long ends a crash loop

    def delay(self, consecutive_crashes: int) -> float:
        return float(min(self.first_s * 2 ** max(consecutive_crashes - 1, 0), self.max_s))


@dataclass(frozen=True)
class Liveness:
    path: str = "/feastflow/live/"
    period_s: float = 5.0
    timeout_s: float = 2.0
    failures: int = 6


@dataclass(frozen=True)
class Spec:
    """How a unit's process was started, to start it again the same way."""

    executable: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str | None  # where its stdout and stderr went; None: nowhere we can reopen


@dataclass
class UnitState:
    name: str
    pid: int | None = None
    started_at: float | None = None  # wall clock, for uptime
    restarts: int = 0
    consecutive_crashes: int = 0
    restart_at: float | None = None  # monotonic; set while a crashed unit waits for its back-off
    last_exit: str | None = None
    spec: Spec | None = field(default=None, repr=False)
    live_seen: bool = False
    live_failures: int = 0
    probe: bool = True
    next_probe_at: float = 0.0


def started_at(pid: int) -> float | None:
    """The wall-clock time a process started (/proc/PID/stat field 22: clock ticks after boot)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[19])
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def capture(pid: int) -> Spec | None:
    try:
        proc = Path(f"/proc/{pid}")
        argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
        env = dict(
            entry.decode().split("=", 1) for entry in (proc / "environ").read_bytes().split(b"\0") if b"=" in entry
        )
        executable = os.readlink(proc / "exe")
        cwd = os.readlink(proc / "cwd")
        out = os.readlink(proc / "fd" / "1")
    except (OSError, UnicodeDecodeError):
        return None
    if not argv:
        return None
    return Spec(executable, argv, env, cwd, out if out.startswith("/") and Path(out).is_file() else None)


def is_unit(pid: int) -> bool:
    """A pid file left behind may name a pid since reused by another program: never adopt (and later re-run) that."""
    try:
        return is_unit_command(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def spawn(spec: Spec) -> int:
    """Start a unit detached (its own session, output appended to its log), in its working directory.

    posix_spawn has no working-directory action before Python 3.13; the supervisor is single-threaded
    where it matters, so it steps into the directory for the spawn and back."""
    here = os.getcwd()
    os.chdir(spec.cwd)
    try:
        return os.posix_spawn(
            spec.executable,
            spec.argv,
            spec.env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, spec.log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    finally:
        os.chdir(here)


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


class Supervisor:
    def __init__(self, run_dir: Path, backoff: BackOff | None = None, liveness: Liveness | None = None) -> None:
        self.run_dir = run_dir
        self.backoff = backoff or BackOff()
        self.liveness = liveness or Liveness()
        self.state_file = run_dir / "supervisor.json"
        self.units: dict[str, UnitState] = {}
        self.children: set[int] = set()
        self.exit_codes: dict[int, int] = {}
        self._saved = ""
        self._stopping: set[asyncio.Task[None]] = set()

    def pidfiles(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.run_dir.glob("*.pid")) if UNIT_NAME.match(p.stem)}

    def tick(self, now: float) -> None:
        """One look at every unit: take note of new processes, notice crashes, restart when a back-off is over."""
        self._reap()
        files = self.pidfiles()
        for name in set(self.units) - set(files):  # pid file removed: the unit was stopped on purpose
            del self.units[name]
        for name, pidfile in files.items():
            unit = self.units.setdefault(name, UnitState(name))
            recorded = read_pid(pidfile)
            if recorded is not None and recorded != unit.pid and process_alive(recorded) and is_unit(recorded):
                self._adopt(unit, recorded)
            elif (
                unit.pid is not None
                and unit.restart_at is None
                and not process_alive(unit.pid)
                and read_pid(pidfile) == unit.pid  # still the desired process: it crashed
            ):
                self._crashed(unit, now)
            if unit.restart_at is not None and now >= unit.restart_at and read_pid(pidfile) == unit.pid:
                self._restart(unit, pidfile)
        self._save()

    def _adopt(self, unit: UnitState, pid: int, spec: Spec | None = None) -> None:
        """A process the pid file names that we have not seen: started by apps.sh, a rollout, or us."""
        spec = spec or capture(pid)
        if spec is None:
            logger.warning("%s: cannot read how pid %d was started; it will not be restarted", unit.name, pid)
        if unit.pid is not None and unit.restart_at is None:
            logger.info("%s: now pid %d (was %d)", unit.name, pid, unit.pid)
        unit.pid, unit.spec, unit.restart_at = pid, spec, None
        unit.started_at = started_at(pid) or time.time()
        unit.live_seen, unit.live_failures, unit.probe, unit.next_probe_at = False, 0, True, 0.0

    def _crashed(self, unit: UnitState, now: float) -> None:
        assert unit.pid is not None
        ran_s = time.time() - (unit.started_at or time.time())
        unit.consecutive_crashes = 1 if ran_s >= self.backoff.reset_after_s else unit.consecutive_crashes + 1
        delay = self.backoff.delay(unit.consecutive_crashes)
        code = self.exit_codes.pop(unit.pid, None)
        unit.last_exit = f"pid {unit.pid} exited{'' if code is None else f' with {code}'} after {ran_s:.0f}s"
        if unit.spec is None:
            logger.error("%s: %s and cannot be restarted (unknown command)", unit.name, unit.last_exit)
            unit.pid = unit.restart_at = None
            return
        logger.warning("%s: %s; restarting in %.0fs", unit.name, unit.last_exit, delay)
        unit.restart_at = now + delay

    def _restart(self, unit: UnitState, pidfile: Path) -> None:
        assert unit.spec is not None
        spec = unit.spec
        try:
            pid = spawn(spec)
        except OSError as exc:
            unit.consecutive_crashes += 1
            unit.restart_at = time.monotonic() + self.backoff.delay(unit.consecutive_crashes)
            logger.error("%s: restart failed: %s", unit.name, exc)
            return
        self.children.add(pid)
        staged = pidfile.with_suffix(".pid.tmp")
        staged.write_text(f"{pid}\n")
        staged.replace(pidfile)
        unit.restarts += 1
        logger.warning("%s: restarted as pid %d (restart %d)", unit.name, pid, unit.restarts)
        self._adopt(unit, pid, spec)  # /proc may still show the process before its exec: keep what we know

    def _reap(self) -> None:
        """Collect the exit status of the processes we started (the others' parent collects theirs)."""
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.children.discard(pid)
                continue
            if done:
                self.children.discard(pid)
                if any(unit.pid == pid for unit in self.units.values()):  # else replaced: stopped on purpose
                    self.exit_codes[pid] = os.waitstatus_to_exitcode(status)

    async def probe(self, session: aiohttp.ClientSession, now: float) -> None:
        """Liveness of the workers whose builds have the endpoint."""
        for unit in list(self.units.values()):
            if unit.name != "worker" or unit.pid is None or unit.restart_at is not None or unit.spec is None:
                continue
            if not unit.probe or now < unit.next_probe_at:
                continue
            unit.next_probe_at = now + self.liveness.period_s
            port = unit.spec.env.get("FEASTFLOW_WORKER_WEB_PORT", "6066")
            try:
                async with session.get(
                    f"http://127.0.0.1:{port}{self.liveness.path}",
                    timeout=aiohttp.ClientTimeout(total=self.liveness.timeout_s),
                ) as response:
                    status: int | None = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = None
            self._probed(unit, status)

    def _probed(self, unit: UnitState, status: int | None) -> None:
        if status == 404:
            logger.info("%s: pid %s has no %s (an older build): not probed", unit.name, unit.pid, self.liveness.path)
            unit.probe = False
        elif status == 200:
            unit.live_seen, unit.live_failures = True, 0
        elif unit.live_seen:  # not yet live once: still starting, not failing
            unit.live_failures += 1
            logger.warning("%s: liveness probe failed (%s), %d in a row", unit.name, status, unit.live_failures)
            if unit.live_failures >= self.liveness.failures and unit.pid is not None:
                failed = unit.live_failures
                logger.error("%s: not live for %d probes; stopping pid %d to restart it", unit.name, failed, unit.pid)
                unit.probe = False
                task = asyncio.get_running_loop().create_task(stop_gracefully(unit.pid, f"{unit.name} (not live)"))
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def _save(self) -> None:
        units = {}
        for name, unit in self.units.items():
            view = {k: v for k, v in asdict(unit).items() if k in ("pid", "started_at", "restarts", "last_exit")}
            view["restarting_in_s"] = (
                None if unit.restart_at is None else round(max(unit.restart_at - time.monotonic(), 0.0), 1)
            )
            units[name] = view
        text = json.dumps({"pid": os.getpid(), "units": units}, sort_keys=True)
        if text == self._saved:
            return
        staged = self.state_file.with_suffix(".tmp")
        staged.write_text(text + "\n")
        staged.replace(self.state_file)
        self._saved = text

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("supervising the units in %s (pid %d)", self.run_dir, os.getpid())
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                now = time.monotonic()
                self.tick(now)
                await self.probe(session, now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TICK_S)
        logger.info("supervisor stopped; the units keep running, unsupervised")


def supervise(settings: Settings) -> int:
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await Supervisor(run_dir).run(stop)

    asyncio.run(main())
    return 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def status_lines(run_dir: Path) -> tuple[list[str], bool]:
    """`make status`: each unit's pid, uptime and restart count; whether all are up and supervised."""
    try:
        state = json.loads((run_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        state = {"units": {}}
    supervisor_pid = read_pid(run_dir / "supervisor.pid")
    supervised = supervisor_pid is not None and process_alive(supervisor_pid)
    lines = [f"supervisor: {f'up (pid {supervisor_pid})' if supervised else 'not running: crashed units stay down'}"]
    healthy = supervised
    for name, pidfile in Supervisor(run_dir).pidfiles().items():
        pid = read_pid(pidfile)
        known = state["units"].get(name, {}) if supervised else {}
        restarts = f", {known.get('restarts', 0)} restart(s)" if supervised else ""
        if pid is not None and process_alive(pid):
            since = started_at(pid)
            uptime = f", up {_duration(time.time() - since)}" if since else ""
            lines.append(f"{name}: up (pid {pid}{uptime}{restarts})")
        else:
            healthy = False
            waiting = known.get("restarting_in_s")
            note = f"restarting in {waiting:.0f}s" if waiting is not None else "down"
            last = f"; last: {known['last_exit']}" if known.get("last_exit") else ""
            lines.append(f"{name}: {note}{restarts}{last}")
    return lines, healthy


def print_status(settings: Settings) -> int:
    lines, healthy = status_lines(settings.data_dir / "run")
    for line in lines:
        print(line)
    return 0 if healthy else 1

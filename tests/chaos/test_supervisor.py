"""The local stack's supervisor, on real processes in a private run folder: a crash is restarted the same way
with back-off; a replacement (a rollout's order: pid file first, then stop the old one) or a removal is not."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.stack import Unit, process_alive, stop_restarted
from ops.supervisor import BackOff, Supervisor, is_unit, read_pid, status_lines
from tests.support.polling import poll_until_sync

# "feastflow" in the command line: the supervisor only adopts the project's processes.
UNIT = [sys.executable, "-c", "import os, time; print('started', os.environ['UNIT_MARK'], flush=True); time.sleep(600)"]


STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    run = tmp_path / "run"
    run.mkdir()
    yield run
    for pidfile in run.glob("*.pid"):
        pid = read_pid(pidfile)
        if pid is not None and process_alive(pid) and pid != os.getpid():
            os.killpg(pid, signal.SIGKILL)
    while STARTED:
        started = STARTED.pop()
        started.kill()
        started.wait(5)


def start_unit(run_dir: Path, name: str, mark: str) -> subprocess.Popen[bytes]:
    log = (run_dir.parent / f"{name}.log").open("ab")
    with log:
        unit = subprocess.Popen(
            [*UNIT, "feastflow"],
            env={**os.environ, "UNIT_MARK": mark},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    STARTED.append(unit)
    # Just spawned, /proc may still show the parent's image for a moment.
    poll_until_sync(lambda: is_unit(unit.pid), 10, 0.01, f"{unit.pid} never looked like a unit")
    (run_dir / f"{name}.pid").write_text(f"{unit.pid}\n")
    return unit


def kill(process: subprocess.Popen[bytes] | int) -> None:
    pid = process if isinstance(process, int) else process.pid
    os.kill(pid, signal.SIGKILL)
    if isinstance(process, subprocess.Popen):
        process.wait(5)
    else:
        poll_until_sync(lambda: not process_alive(pid), 5, message=f"{pid} still alive after SIGKILL")


def wait_log(path: Path, text: str, count: int) -> None:
    def logged() -> bool:
        assert path.read_text().count(text) >= count, path.read_text()
        return True

    poll_until_sync(logged, 10, message=f"{text!r} not logged {count} times")


def test_a_crashed_unit_is_restarted_the_same_way_with_back_off(run_dir: Path) -> None:
    unit = start_unit(run_dir, "worker", "w-original")
    supervisor = Supervisor(run_dir, BackOff(first_s=1.0, max_s=30.0, reset_after_s=60.0))
    now = 1000.0
    supervisor.tick(now)
    assert supervisor.units["worker"].pid == unit.pid
    wait_log(run_dir.parent / "worker.log", "started w-original", 1)

    kill(unit)
    supervisor.tick(now)
    assert read_pid(run_dir / "worker.pid") == unit.pid, "restarted before its back-off"
    supervisor.tick(now + 0.9)
    assert supervisor.units["worker"].restarts == 0
    supervisor.tick(now + 1.0)
    first = read_pid(run_dir / "worker.pid")
    assert first is not None and first != unit.pid and process_alive(first)
    wait_log(run_dir.parent / "worker.log", "started w-original", 2)  # same environment, same log

    kill(first)  # again within a minute: the back-off doubles
    supervisor.tick(now + 2.0)
    supervisor.tick(now + 3.9)
    assert read_pid(run_dir / "worker.pid") == first
    supervisor.tick(now + 4.0)
    second = read_pid(run_dir / "worker.pid")
    assert second not in (None, first) and process_alive(second or 0)
    assert supervisor.units["worker"].restarts == 2
    state = json.loads((run_dir / "supervisor.json").read_text())["units"]["worker"]
    assert state["pid"] == second and state["restarts"] == 2 and "exited" in state["last_exit"]


def test_the_back_off_doubles_to_its_cap() -> None:
    backoff = BackOff()
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_replaced_or_removed_unit_is_not_restarted(run_dir: Path) -> None:
    old = start_unit(run_dir, "api-1", "old")
    other = start_unit(run_dir, "api-2", "other")
    supervisor = Supervisor(run_dir, BackOff(first_s=0.0))
    supervisor.tick(0.0)
    successor = start_unit(run_dir, "api-1", "new")  # a rollout records the successor, then stops the old pod
    old.terminate()
    old.wait(5)
    supervisor.tick(1.0)
    supervisor.tick(2.0)
    assert read_pid(run_dir / "api-1.pid") == successor.pid
    assert supervisor.units["api-1"].restarts == 0 and supervisor.units["api-1"].pid == successor.pid

    (run_dir / "api-2.pid").unlink()  # stopped on purpose: no desired state left
    kill(other)
    supervisor.tick(3.0)
    supervisor.tick(4.0)
    assert "api-2" not in supervisor.units and not (run_dir / "api-2.pid").exists()


def test_a_pid_file_naming_someone_elses_process_is_not_adopted(run_dir: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        (run_dir / "worker.pid").write_text(f"{stranger.pid}\n")
        supervisor = Supervisor(run_dir)
        supervisor.tick(0.0)
        assert supervisor.units["worker"].pid is None
    finally:
        stranger.kill()
        stranger.wait(5)


def test_a_worker_that_stops_being_live_is_stopped_and_restarted(run_dir: Path) -> None:
    unit = start_unit(run_dir, "worker", "stuck")
    supervisor = Supervisor(run_dir, BackOff(first_s=0.0))
    supervisor.tick(0.0)
    worker = supervisor.units["worker"]

    async def probe_results(statuses: list[int | None]) -> None:
        for status in statuses:
            supervisor._probed(worker, status)
        for task in list(supervisor._stopping):
            await task

    asyncio.run(probe_results([None, 503, 503]))  # still starting: not counted
    assert worker.live_failures == 0 and process_alive(unit.pid)
    asyncio.run(probe_results([200, 503, 503, None, 503, 503]))
    assert process_alive(unit.pid), "stopped before six failed probes in a row"
    asyncio.run(probe_results([503]))
    unit.wait(5)
    supervisor.tick(1.0)
    supervisor.tick(2.0)
    assert worker.restarts == 1 and read_pid(run_dir / "worker.pid") not in (None, unit.pid)


def test_an_older_build_without_the_endpoint_is_not_probed(run_dir: Path) -> None:
    start_unit(run_dir, "worker", "old-build")
    supervisor = Supervisor(run_dir)
    supervisor.tick(0.0)
    supervisor._probed(supervisor.units["worker"], 404)
    assert supervisor.units["worker"].probe is False


def test_status_shows_pid_uptime_and_restarts(run_dir: Path) -> None:
    unit = start_unit(run_dir, "worker", "status")
    supervisor = Supervisor(run_dir, BackOff(first_s=0.0))
    supervisor.tick(0.0)
    (run_dir / "supervisor.pid").write_text(f"{os.getpid()}\n")  # stands in for the supervisor's own process
    kill(unit)
    supervisor.tick(1.0)
    supervisor.tick(2.0)
    lines, healthy = status_lines(run_dir)
    pid = read_pid(run_dir / "worker.pid")
    assert healthy
    assert lines[0] == f"supervisor: up (pid {os.getpid()})"
    assert lines[1].startswith(f"worker: up (pid {pid}, up ") and lines[1].endswith(", 1 restart(s))")
    assert pid is not None
    kill(pid)
    lines, healthy = status_lines(run_dir)
    assert not healthy and lines[1].startswith("worker: down")


def test_a_rollout_stops_a_restart_that_happened_while_it_replaced_the_unit(run_dir: Path) -> None:
    crashed = start_unit(run_dir, "api-1", "crashed")
    kill(crashed)
    restart = start_unit(run_dir, "api-1", "restarted")  # what the supervisor did meanwhile
    asyncio.run(stop_restarted(restart.pid, Unit("api-1", crashed.pid, 8081), "old api-1"))
    assert restart.wait(10) is not None
    untouched = start_unit(run_dir, "api-2", "same")
    asyncio.run(stop_restarted(untouched.pid, Unit("api-2", untouched.pid, 8082), "old api-2"))
    assert untouched.poll() is None, "the unit the rollout stops itself is not stopped twice"

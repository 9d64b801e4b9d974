"""Who counts as a unit of the local stack: `make stop` (deploy/local/apps.sh) and the supervisor
(ops.supervisor.is_unit) both recognise a unit by its command line, in both forms it is started with — the
console script (`make run`) and `python -P -m ops.cli` (a rollout, ops.stack). A rolled unit they did not
recognise was left running by `make stop` and went on writing into the next stack on the same ports."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import REPO_ROOT
from ops.stack import is_unit_command
from tests.support.polling import poll_until_sync

LIB = REPO_ROOT / "deploy" / "local" / "lib.sh"
FORMS = {
    "console script": [sys.executable, "-c", "import time; time.sleep(60)", "/x/.venv/bin/feastflow", "api"],
    "rolled unit": [sys.executable, "-c", "import time; time.sleep(60)", "-P", "-m", "ops.cli", "worker"],
    "older release": [sys.executable, "-c", "import time; time.sleep(60)", "-m", "feastflow.cli", "api"],
}


@pytest.fixture(params=sorted(FORMS))
def unit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    process = subprocess.Popen(FORMS[request.param])
    # Until the child has exec'd, /proc shows the parent's command line (pytest's): wait for its own.
    poll_until_sync(lambda: b"time.sleep" in Path(f"/proc/{process.pid}/cmdline").read_bytes(), 10, 0.01, "no exec")
    pidfile = tmp_path / "unit.pid"
    pidfile.write_text(f"{process.pid}\n")
    yield pidfile
    process.kill()
    process.wait()


def shell_says_alive(pidfile: Path, pattern: str = "$UNIT_PATTERN") -> bool:
    script = f'set -euo pipefail; source "{LIB}"; pid_alive "{pidfile}" "{pattern}"'
    return subprocess.run(["bash", "-c", script], check=False).returncode == 0


def test_make_stop_recognises_every_form_a_unit_is_started_in(unit: Path) -> None:
    assert shell_says_alive(unit)


def test_the_supervisor_recognises_every_form_a_unit_is_started_in(unit: Path) -> None:
    pid = int(unit.read_text())
    assert is_unit_command(Path(f"/proc/{pid}/cmdline").read_bytes())


def test_someone_elses_process_on_a_reused_pid_is_not_a_unit(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    poll_until_sync(lambda: b"time.sleep" in Path(f"/proc/{process.pid}/cmdline").read_bytes(), 10, 0.01, "no exec")
    try:
        pidfile = tmp_path / "stale.pid"
        pidfile.write_text(f"{process.pid}\n")
        assert not shell_says_alive(pidfile)
        assert not is_unit_command(Path(f"/proc/{process.pid}/cmdline").read_bytes())
        assert shell_says_alive(pidfile, "time.sleep")  # a plain word still matches where it appears
    finally:
        process.kill()
        process.wait()

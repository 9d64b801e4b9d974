"""The local stack's release history: every rollout and rollback is a numbered release with the code it ran,
who started it, when, and how it ended. `feastflow releases` prints it; `feastflow rollback` reads it.

Stored as one JSON document in <data>/releases/history.json, rewritten whole and renamed into place.
"""

import fcntl
import getpass
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from models.events import utc_now
from ops.results import markdown_table

IN_PROGRESS = "in_progress"
SUCCEEDED = "succeeded"
FAILED = "failed"  # the previous version was put back on every unit the release had replaced
DEPLOYS = ("baseline", "rollout", "rollback")  # the kinds that change what runs
# A canary's analysis (kind "canary") ends passed or aborted; its promotion is a rollout release of its own.
PASSED = "passed"
ABORTED = "aborted"


@dataclass(frozen=True)
class Release:
    number: int
    kind: str  # rollout | rollback
    code: str  # the checkout the units run (PYTHONPATH)
    version: str  # its commit, "-dirty" when the checkout had uncommitted changes
    ref: str | None
    started_at: str
    who: str
    outcome: str = IN_PROGRESS
    finished_at: str | None = None
    reason: str | None = None


class ReleaseHistory:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "releases" / "history.json"

    def all(self) -> list[Release]:
        if not self.path.exists():
            return []
        return [Release(**entry) for entry in json.loads(self.path.read_text())]

    def get(self, number: int) -> Release | None:
        return next((r for r in self.all() if r.number == number), None)

    def begin(self, kind: str, code: Path, ref: str | None) -> Release:
        with self._locked() as releases:
            release = Release(
                number=max((r.number for r in releases), default=0) + 1,
                kind=kind,
                code=str(code),
                version=code_version(code),
                ref=ref,
                started_at=utc_now(),
                who=_who(),
            )
            releases.append(release)
        return release

    def ensure_baseline(self, running: Path) -> None:
        """Before the first release: record what runs now, so there is something to roll back to."""
        with self._locked() as releases:
            if not any(r.kind in DEPLOYS for r in releases):  # canaries may come first; they deploy nothing
                version = code_version(running)
                now = utc_now()
                releases.append(Release(0, "baseline", str(running), version, None, now, _who(), SUCCEEDED, now))

    def finish(self, release: Release, outcome: str, reason: str | None = None) -> Release:
        finished = replace(release, outcome=outcome, finished_at=utc_now(), reason=reason)
        with self._locked() as releases:
            releases[:] = [finished if r.number == release.number else r for r in releases]
        return finished

    def last_good(self, before: int | None = None) -> Release | None:
        good = [r for r in self.all() if r.outcome == SUCCEEDED and (before is None or r.number < before)]
        return max(good, key=lambda r: r.number) if good else None

    @contextmanager
    def _locked(self) -> Iterator[list[Release]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / ".history.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            releases = self.all()
            yield releases
            staged = self.path.with_suffix(".tmp")
            staged.write_text(json.dumps([asdict(r) for r in releases], indent=1) + "\n")
            staged.replace(self.path)


def code_version(code: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return "unknown"
    return f"{commit}-dirty" if git("status", "--porcelain", "--untracked-files=no") else commit


def _who() -> str:
    try:
        return os.environ.get("FEASTFLOW_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def print_releases(releases: list[Release]) -> None:
    rows = [
        (str(r.number), r.kind, r.version, r.ref or "", r.started_at, r.who, r.outcome, r.reason or "")
        for r in releases
    ]
    print(markdown_table(("#", "kind", "version", "ref", "started", "who", "outcome", "reason"), rows))

"""Other builds of Feast Flow for deploy tests: this checkout copied, with some lines changed."""

import shutil
import subprocess
from pathlib import Path

from core.settings import REPO_ROOT, Settings
from ops.stack import LocalStack, code_of


def build(tmp_path: Path, name: str, patches: dict[str, tuple[str, str]]) -> Path:
    """A copy of this checkout (tracked and new files) with some lines changed: another build to roll to."""
    code = tmp_path / name
    listed = (
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for relative in filter(None, listed):
        source = REPO_ROOT / relative
        if source.is_file():
            (code / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, code / relative)
    for relative, (old, new) in patches.items():
        text = (code / relative).read_text()
        assert old in text, f"{relative} no longer has the line to break"
        (code / relative).write_text(text.replace(old, new, 1))
    return code


def running_code(settings: Settings) -> dict[str, Path]:
    stack = LocalStack(settings)
    units = {unit.name: code_of(unit.pid) for unit in stack.api_units()}
    units["worker"] = code_of(stack.worker_unit()[0].pid)
    return units

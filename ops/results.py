"""Measured results, kept where anyone can trace them: every benchmark and rehearsal writes its raw report
(JSON) and its table (Markdown) under docs/benchmarks/, and the README quotes those tables verbatim between
`<!-- results:KIND -->` and `<!-- /results:KIND -->` markers (tests/unit/test_results.py holds them equal).
The one Markdown table printer of the project lives here too."""

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "docs" / "benchmarks"
README = REPO_ROOT / "README.md"
_BLOCK = re.compile(r"(<!-- results:(?P<kind>[a-z0-9.-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=kind) -->)", re.S)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table with its columns padded, so it reads in a terminal as well as rendered."""
    body = [tuple(str(cell).replace("|", "\\|") for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in [tuple(header), *body]) for i in range(len(header))]
    lines = [tuple(header), tuple("-" * w for w in widths), *body]
    return "\n".join("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in lines)


def publish(kind: str, command: str, report: dict[str, Any], table: str, directory: Path = RESULTS_DIR) -> Path:
    """Write KIND.json (the raw report and how it was made) and KIND.md (the table), then refresh the README's
    quote of it. `command` is what to run to measure it again. Returns the Markdown file."""
    directory.mkdir(parents=True, exist_ok=True)
    made = {
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "commit": _commit(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
    }
    (directory / f"{kind}.json").write_text(json.dumps({"made": made, "report": report}, indent=2) + "\n")
    markdown = directory / f"{kind}.md"
    markdown.write_text(
        f"{table}\n\n_`{command}` at {made['recorded_at']}, commit {made['commit']}, {made['machine']}._\n"
    )
    if directory == RESULTS_DIR and README.exists():
        sync_readme(README, directory)
    return markdown


def readme_quotes(text: str) -> dict[str, str]:
    return {m["kind"]: m["body"] for m in _BLOCK.finditer(text)}


def sync_readme(readme: Path = README, directory: Path = RESULTS_DIR) -> list[str]:
    """Replace each quoted block with its results file; returns the kinds that changed."""
    text = readme.read_text()
    changed: list[str] = []

    def quote(match: re.Match[str]) -> str:
        source = directory / f"{match['kind']}.md"
        if not source.exists():
            return match.group(0)
        body = source.read_text()
        if body != match["body"]:
            changed.append(match["kind"])
        return f"{match.group(1)}{body}{match.group(4)}"

    updated = _BLOCK.sub(quote, text)
    if updated != text:
        readme.write_text(updated)
    return changed


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


if __name__ == "__main__":
    print("README quotes refreshed:", ", ".join(sync_readme()) or "none changed")

"""The image: hadolint-clean, dependencies cached apart from the code, slim and unprivileged, no secrets in."""

import re
from pathlib import Path

from tests.deploy.conftest import REPO, run, tool

DOCKERFILE = REPO / "deploy" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_hadolint_passes() -> None:
    result = run([tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_flag_a_root_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    assert run([tool("hadolint"), "--failure-threshold", "style", str(bad)]).returncode != 0


def test_the_runtime_is_python_311_slim_as_an_unprivileged_user() -> None:
    stages = _stages()
    base = stages[0][0][1]
    assert re.match(r"python:3\.11\.\d+-slim", base), base
    runtime = stages[-1]
    assert runtime[0][1].split()[0] == stages[0][0][1].split()[-1]  # FROM base AS runtime
    users = [args for name, args in runtime if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert ("ENTRYPOINT", '["feastflow"]') in runtime


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    build = _stages()[1]
    steps = [f"{name} {args}" for name, args in build]
    install_deps = next(i for i, s in enumerate(steps) if "--requirement" in s)
    first_code = next(i for i, s in enumerate(steps) if re.match(r"COPY (models|core|streams|api|ops)\b", s))
    assert all("setup.cfg" in s for s in steps[:install_deps] if s.startswith("COPY"))
    assert install_deps < first_code


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "**"  # deny everything, then allow what the image needs
    allowed = [rule[1:] for rule in rules if rule.startswith("!")]
    for local in (".data", ".venv", ".git", "tests", "deploy"):
        assert not any(rule.startswith(local) for rule in allowed), local
    copied = {args.split()[0] for name, args in _instructions() if name == "COPY" and "--from" not in args}
    for source in copied:
        assert any(source == rule.rstrip("/*") or source.startswith(rule.rstrip("*")) for rule in allowed), source

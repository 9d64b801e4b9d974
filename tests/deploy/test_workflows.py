"""The GitHub workflows: actionlint-clean, actions pinned, one image build, and a CD that promotes one digest
and rolls back; with the two scripts CD runs (set_image.py, smoke.py) exercised for real."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, REPO, WORKLOAD_KINDS, analysis_seconds, load_manifests, run, tool

WORKFLOWS = REPO / ".github" / "workflows"
SET_IMAGE = REPO / "deploy" / "cd" / "set_image.py"
SMOKE = REPO / "deploy" / "cd" / "smoke.py"
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@v\d+\.\d+\.\d+$")


def _workflow(name: str) -> dict[Any, Any]:
    return dict(yaml.safe_load((WORKFLOWS / name).read_text()))


def _steps(workflow: dict[Any, Any]) -> Iterator[dict[str, Any]]:
    for job in workflow["jobs"].values():
        yield from job.get("steps", [])


def test_actionlint_passes() -> None:
    result = run([tool("actionlint"), "-shellcheck", tool("shellcheck")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_would_flag_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ nope }}\n")
    assert run([tool("actionlint"), str(broken)]).returncode != 0


def test_every_action_is_pinned_to_an_exact_version() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for step in _steps(_workflow(path.name)):
            if "uses" in step:
                assert PINNED_ACTION.match(step["uses"]), f"{path.name}: {step['uses']}"


def test_ci_runs_the_suite_on_real_services_without_starting_its_own() -> None:
    test_job = _workflow("ci.yml")["jobs"]["test"]
    images = {name: service["image"] for name, service in test_job["services"].items()}
    assert set(images) == {"kafka", "redis", "postgres"}
    assert all(re.search(r":\d+(\.\d+)+$", image) for image in images.values()), images
    ports = {int(p.split(":")[0]) for s in test_job["services"].values() for p in s["ports"]}
    assert ports == {9092, 6379, 5432}  # where tests/support/stack.py and Settings' defaults look
    assert test_job["env"]["FEASTFLOW_INFRA"] == "external"
    assert any(step.get("run") == "make test" for step in test_job["steps"])
    # The Makefile really skips infra.sh when told, and only then (CI itself runs this with it set).
    local = {name: value for name, value in os.environ.items() if name != "FEASTFLOW_INFRA"}

    def make_up(*args: str) -> str:
        return subprocess.run(["make", "-n", "up", *args], capture_output=True, text=True, cwd=REPO, env=local).stdout

    assert "infra.sh up" not in make_up("FEASTFLOW_INFRA=external")
    assert "infra.sh up" in make_up()


def test_the_image_is_built_once_tagged_by_commit_and_its_digest_recorded() -> None:
    workflow = _workflow("image.yml")
    build = workflow["jobs"]["build"]
    builds = [s for s in build["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert len(builds) == 1
    assert builds[0]["with"]["file"] == "deploy/Dockerfile"
    assert "GIT_SHA=${{ github.sha }}" in builds[0]["with"]["build-args"]
    meta = next(s for s in build["steps"] if s.get("uses", "").startswith("docker/metadata-action@"))
    assert "type=sha,format=long,prefix=" in meta["with"]["tags"]
    assert meta["with"]["images"] == "${{ env.REPOSITORY }}"
    assert build["env"]["REPOSITORY"] == "${{ vars.REGISTRY }}/${{ vars.IMAGE_NAME }}"
    assert build["outputs"]["digest"] == f"${{{{ steps.{builds[0]['id']}.outputs.digest }}}}"
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in build["steps"])
    assert workflow["jobs"]["deploy"]["with"]["digest"] == "${{ needs.build.outputs.digest }}"


def test_cd_promotes_the_same_digest_to_production_only_after_staging() -> None:
    jobs = _workflow("cd.yml")["jobs"]
    assert jobs["production"]["needs"] == "staging"
    for name in ("staging", "production"):
        assert jobs[name]["uses"] == "./.github/workflows/deploy-environment.yml"
        assert jobs[name]["with"]["environment"] == name
        assert jobs[name]["with"]["digest"] == "${{ inputs.digest }}"
    assert jobs["production"]["with"]["argocd-sync"] is True  # no automated sync in production
    deploy = _workflow("deploy-environment.yml")["jobs"]["deploy"]
    assert deploy["environment"]["name"] == "${{ inputs.environment }}"  # production's reviewers gate it


def test_cd_deploys_atomically_and_rolls_back_after_a_failed_smoke_check() -> None:
    steps = {s.get("name"): s for s in _workflow("deploy-environment.yml")["jobs"]["deploy"]["steps"]}
    helm = steps["Deploy with Helm"]["run"]
    for flag in ("upgrade --install", "--atomic", "--wait", "--timeout"):
        assert flag in helm, flag
    smoke = steps["Smoke check"]
    assert "deploy/cd/smoke.py" in smoke["run"]
    rollback = steps["Roll back to the previous digest"]
    assert rollback["if"].startswith("failure()")
    assert "git revert" in rollback["run"]
    assert '"$HELM" rollback' in rollback["run"]
    assert "deploy/cd/argocd-wait.sh" in rollback["run"]
    order = list(steps)
    assert order.index("Write the digest into the values (GitOps)") < order.index("Smoke check")
    assert order.index("Smoke check") < order.index("Roll back to the previous digest")


def test_cd_waits_longer_than_the_slowest_rollout_deadline(rendered: dict[str, Any]) -> None:
    timeout = int(_workflow("deploy-environment.yml")["jobs"]["deploy"]["env"]["ROLLOUT_TIMEOUT_S"])
    for environment in rendered.values():
        # The pricing canary's Rollout also waits out its analysis before it promotes.
        analysis = max(map(analysis_seconds, environment.of_kind("AnalysisTemplate")), default=0)
        for workload in environment.long_running():
            in_analysis = analysis if workload["kind"] == "Rollout" else 0
            assert timeout > workload["spec"]["progressDeadlineSeconds"] + in_analysis


@pytest.fixture
def values_copy(tmp_path: Path) -> Path:
    chart = tmp_path / "feastflow"
    shutil.copytree(CHART, chart)
    return chart


def _set_image(chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(SET_IMAGE.parent)!r}); import set_image; from pathlib import Path; "
        f"print(set_image.set_image(Path({str(chart / 'values-staging.yaml')!r}), *sys.argv[1:]))"
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_set_image_points_the_chart_at_the_digest_and_keeps_the_file(values_copy: Path) -> None:
    before = (values_copy / "values-staging.yaml").read_text()
    digest, commit = "sha256:" + "1f" * 32, "c0ffee" + "0" * 34
    result = _set_image(values_copy, "ghcr.io/acme/feastflow", digest, commit)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("registry.example.com/feastflow/feastflow")
    after = (values_copy / "values-staging.yaml").read_text()
    assert [line for line in before.splitlines() if line.startswith("#")] == [
        line for line in after.splitlines() if line.startswith("#")
    ]
    rendered = run(
        [
            tool("helm"),
            "template",
            "feastflow",
            str(values_copy),
            "-f",
            str(values_copy / "values-staging.yaml"),
            "--kube-version",
            "1.33.0",
        ]
    )
    assert rendered.returncode == 0, rendered.stderr
    images = {
        c["image"]
        for d in load_manifests(rendered.stdout)
        if d["kind"] in WORKLOAD_KINDS
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {f"ghcr.io/acme/feastflow@{digest}"}
    again = _set_image(values_copy, "ghcr.io/acme/feastflow", "sha256:" + "2e" * 32, commit)
    assert again.stdout.strip() == f"ghcr.io/acme/feastflow@{digest}"  # what a rollback goes back to


@pytest.mark.parametrize("digest", ["latest", "sha256:abc", "sha256:" + "G" * 64])
def test_set_image_refuses_anything_but_a_digest(values_copy: Path, digest: str) -> None:
    before = (values_copy / "values-staging.yaml").read_text()
    assert _set_image(values_copy, "ghcr.io/acme/feastflow", digest, "a" * 40).returncode != 0
    assert (values_copy / "values-staging.yaml").read_text() == before


class _FakeApi(BaseHTTPRequestHandler):
    menu_stream_event = "snapshot"
    cities: list[dict[str, str]] = [{"city": "blr", "name": "Bengaluru", "currency": "INR"}]

    def do_GET(self) -> None:
        if self.path == "/v1/cities":
            self._send("application/json", json.dumps(self.cities).encode())
        elif self.path == "/v1/cities/blr/menu":
            self._send("application/json", b'{"city": "blr", "restaurants": []}')
        elif self.path == "/v1/cities/blr/menu/stream":
            self._send("text/event-stream", f"id: 1\nevent: {self.menu_stream_event}\ndata: {{}}\n\n".encode())
        else:
            self.send_error(404)

    def _send(self, content_type: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _smoke_against(handler: type[BaseHTTPRequestHandler]) -> subprocess.CompletedProcess[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        return subprocess.run([sys.executable, str(SMOKE), url, "--timeout", "1"], capture_output=True, text=True)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_smoke_passes_when_cities_menu_and_stream_answer() -> None:
    result = _smoke_against(_FakeApi)
    assert result.returncode == 0, result.stderr


def test_smoke_fails_when_the_stream_does_not_open_with_a_snapshot() -> None:
    handler = type("NoSnapshot", (_FakeApi,), {"menu_stream_event": "reconnect"})
    result = _smoke_against(handler)
    assert result.returncode == 1
    assert "not a snapshot" in result.stderr


def test_smoke_fails_when_there_are_no_cities() -> None:
    assert _smoke_against(type("NoCities", (_FakeApi,), {"cities": []})).returncode == 1


def test_smoke_passes_against_the_local_gateway() -> None:
    """The real contract: `make test` runs the whole local stack behind the gateway on 127.0.0.1:8080."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8080)) != 0:
            pytest.skip("no local gateway on 127.0.0.1:8080 (make test starts one)")
    result = subprocess.run(
        [sys.executable, str(SMOKE), "http://127.0.0.1:8080", "--timeout", "30"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

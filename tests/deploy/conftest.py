"""The deploy checks: the chart rendered for each environment by deploy/k8s/render.sh, and the pinned tools
`make deploy-tools` installs (found in $DEPLOY_TOOLS_BIN, else .data/tools/bin)."""

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings, variables

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "feastflow"
RENDER_SCRIPT = REPO / "deploy" / "k8s" / "render.sh"
ENVIRONMENTS = ("staging", "production")
# Kinds that run pods: the Rollout is the catalog worker's under the pricing canary (Argo Rollouts).
POD_KINDS = ("Deployment", "Rollout")
WORKLOAD_KINDS = (*POD_KINDS, "Job")

Manifest = dict[str, Any]


def tools_bin() -> Path:
    return Path(os.environ.get("DEPLOY_TOOLS_BIN", REPO / ".data" / "tools" / "bin"))


def tool(name: str) -> str:
    path = tools_bin() / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {tools_bin()}: run `make deploy-tools`")
    return str(path)


def run(command: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool with the deploy tools first on PATH (actionlint finds shellcheck there)."""
    env = {**os.environ, "PATH": f"{tools_bin()}:{os.environ['PATH']}", **kwargs.pop("env", {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, **kwargs)


CheckovResults = dict[str, list[dict[str, Any]]]


def checkov(*args: str) -> CheckovResults:
    """checkov's passed, failed and skipped checks, merged over its reports."""
    result = run([tool("checkov"), *args, "--skip-download", "--output", "json"], timeout=300)
    reports = json.loads(result.stdout)
    merged: CheckovResults = {"failed_checks": [], "skipped_checks": [], "passed_checks": []}
    for report in reports if isinstance(reports, list) else [reports]:
        for key in merged:
            merged[key] += report.get("results", {}).get(key, [])
    return merged


def assert_scan_clean(results: CheckovResults) -> None:
    """Nothing failed, and every skipped check says why."""
    assert results["passed_checks"], "checkov checked nothing"
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert not failed, "\n".join(failed)
    for skipped in results["skipped_checks"]:
        reason = str(skipped["check_result"].get("suppress_comment") or "")
        assert len(reason.strip()) > 20, f"{skipped['check_id']} has no reason"


def kube_version() -> str:
    """The cluster version the manifests are rendered for, and validated against: render.sh's."""
    found = re.search(r'^KUBE_VERSION="\$\{KUBE_VERSION:-([0-9.]+)\}"', RENDER_SCRIPT.read_text(), re.MULTILINE)
    assert found, "render.sh no longer sets KUBE_VERSION"
    return found.group(1)


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_template(environment: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            tool("helm"),
            "template",
            "feastflow",
            str(CHART),
            "-f",
            str(CHART / f"values-{environment}.yaml"),
            "--kube-version",
            kube_version(),
            *extra,
        ]
    )


@dataclass
class Rendered:
    """One environment's objects, as render.sh writes them."""

    environment: str
    files: dict[str, Path]
    manifests: list[Manifest]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def named(self, kind: str, suffix: str) -> Manifest:
        matches = [m for m in self.of_kind(kind) if m["metadata"]["name"].endswith(suffix)]
        assert len(matches) == 1, f"expected one {kind} named *{suffix}, found {len(matches)}"
        return matches[0]

    def workloads(self) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] in WORKLOAD_KINDS]

    def long_running(self) -> list[Manifest]:
        """Deployments and Rollouts: the workloads whose pods serve until replaced."""
        return [m for m in self.manifests if m["kind"] in POD_KINDS]

    def workers(self) -> list[Manifest]:
        return [w for w in self.long_running() if component(w) == "worker"]


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def seconds(duration: str) -> int:
    """An Argo Rollouts duration as the chart writes them: whole seconds, "180s"."""
    found = re.fullmatch(r"(\d+)s", duration)
    assert found, f"{duration!r} is not written in seconds"
    return int(found.group(1))


def analysis_seconds(template: Manifest) -> int:
    """How long an AnalysisRun of this template takes when every measurement is taken."""
    return max(
        seconds(m.get("initialDelay", "0s")) + int(m["count"]) * seconds(m["interval"])
        for m in template["spec"]["metrics"]
    )


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def containers(workload: Manifest) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container_env(container: dict[str, Any], rendered: Rendered) -> dict[str, str]:
    """A container's environment as the kubelet would build it; Secret and field references stay symbolic."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(next(c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"] == name)["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "secretKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = f"<secret {ref['name']}/{ref['key']}>"
        else:
            env[variable["name"]] = f"<field {variable['valueFrom']['fieldRef']['fieldPath']}>"
    return env


def settings_in(environment: dict[str, str]) -> Settings:
    """The Settings a process started with exactly this environment would read."""
    return Settings.from_env(environment)


def names_settings_read() -> set[str]:
    return {variable.name for variable in variables()}


@pytest.fixture(scope="session")
def render_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s")
    result = run(["bash", str(RENDER_SCRIPT), str(out)], env={"HELM": tool("helm")})
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def rendered(render_dir: Path) -> dict[str, Rendered]:
    environments = {}
    for environment in ENVIRONMENTS:
        files = {path.name: path for path in sorted((render_dir / environment).glob("*.yaml"))}
        manifests = [m for path in files.values() for m in load_manifests(path.read_text())]
        environments[environment] = Rendered(environment, files, manifests)
    return environments


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Iterator[Rendered]:
    yield rendered[request.param]

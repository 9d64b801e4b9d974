"""Every manifest is valid Kubernetes, the plain manifests are the chart's, and the security scan is clean."""

from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import (
    ENVIRONMENTS,
    REPO,
    Manifest,
    Rendered,
    assert_scan_clean,
    checkov,
    kube_version,
    load_manifests,
    run,
    tool,
)

PLAIN = REPO / "deploy" / "k8s"
ARGOCD = REPO / "deploy" / "argocd"
# Custom resources kubernetes-validate has no schema for; each has tests of its own (ServiceMonitor in
# test_chart.py, Argo CD below, Argo Rollouts in test_pricing_canary.py).
CUSTOM_KINDS = {"ServiceMonitor", "Application", "AppProject", "Rollout", "AnalysisTemplate"}


def _validate(paths: list[Path]) -> None:
    result = run([tool("kubernetes-validate"), "-k", kube_version(), "--strict", "--quiet", *map(str, paths)])
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        assert any(f"kind {kind} " in line for kind in CUSTOM_KINDS), line


def test_rendered_manifests_match_the_kubernetes_schemas(render_dir: Path) -> None:
    _validate(sorted(render_dir.glob("*/*.yaml")))


def test_plain_manifests_match_the_kubernetes_schemas() -> None:
    _validate(sorted(PLAIN.glob("*/*.yaml")))


def test_the_schema_check_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": [{"port": 80}]}}
        )
    )
    result = run([tool("kubernetes-validate"), "-k", kube_version(), "--strict", "--quiet", str(bad)])
    assert result.returncode != 0


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_plain_manifests_are_what_render_sh_makes_of_the_chart(render_dir: Path, environment: str) -> None:
    committed = sorted(p.name for p in (PLAIN / environment).glob("*.yaml"))
    assert committed == sorted(p.name for p in (render_dir / environment).glob("*.yaml"))
    for name in committed:
        fresh = (render_dir / environment / name).read_text()
        assert (PLAIN / environment / name).read_text() == fresh, (
            f"deploy/k8s/{environment}/{name} is stale: run deploy/k8s/render.sh"
        )


@pytest.mark.parametrize(
    "target",
    [
        ("--directory", "deploy/k8s", "--framework", "kubernetes"),
        ("--file", "deploy/Dockerfile", "--framework", "dockerfile"),
        ("--directory", ".github/workflows", "--framework", "github_actions"),
    ],
    ids=["manifests", "dockerfile", "workflows"],
)
def test_security_scan_finds_nothing_unexplained(target: tuple[str, ...]) -> None:
    assert_scan_clean(checkov(*target))


def test_security_scan_flags_a_privileged_pod(tmp_path: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "x"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    results = checkov("--directory", str(tmp_path), "--framework", "kubernetes")
    failed = {c["check_id"] for c in results["failed_checks"]}
    assert "CKV_K8S_16" in failed  # privileged containers


def _argocd() -> dict[str, Manifest]:
    documents = [d for path in sorted(ARGOCD.glob("*.yaml")) for d in load_manifests(path.read_text())]
    return {d["metadata"]["name"]: d for d in documents}


def test_argocd_staging_syncs_itself_and_production_waits_to_be_told() -> None:
    apps = _argocd()
    staging = apps["feastflow-staging"]["spec"]
    production = apps["feastflow-production"]["spec"]
    assert staging["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "automated" not in production.get("syncPolicy", {})


def test_argocd_applications_deploy_this_chart_with_their_environment_values(
    rendered: dict[str, Rendered],
) -> None:
    apps = _argocd()
    (project,) = [d for d in apps.values() if d["kind"] == "AppProject"]
    allowed = {(d["name"], d["namespace"]) for d in project["spec"]["destinations"]}
    whitelisted = {d["kind"] for d in project["spec"]["namespaceResourceWhitelist"]}
    destinations = set()
    for environment in ENVIRONMENTS:
        spec = apps[f"feastflow-{environment}"]["spec"]
        source = spec["source"]
        assert spec["project"] == project["metadata"]["name"]
        assert source["repoURL"] in project["spec"]["sourceRepos"]
        chart = REPO / source["path"]
        assert (chart / "Chart.yaml").is_file()
        assert source["helm"]["valueFiles"] == [f"values-{environment}.yaml"]
        assert (chart / source["helm"]["valueFiles"][0]).is_file()
        destination = (spec["destination"]["name"], spec["destination"]["namespace"])
        assert destination in allowed
        destinations.add(destination)
        # The namespace render.sh uses for the plain manifests is the one Argo CD deploys into.
        namespaces = {m["metadata"]["namespace"] for m in rendered[environment].manifests}
        assert namespaces == {destination[1]}
        assert {m["kind"] for m in rendered[environment].manifests} <= whitelisted
    assert len(destinations) == len(ENVIRONMENTS), "environments must not share a destination"

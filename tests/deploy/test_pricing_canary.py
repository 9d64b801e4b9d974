"""The pricing canary (values: pricingCanary): the catalog worker under an Argo Rollout whose candidate first runs
as one shadow pod, and the AnalysisTemplate that decides its promotion. Checked against Argo Rollouts' own CRD
schemas, against deploy/canary/pricing.toml, and against the code: track labels, settings, agent names and the
metrics it exports."""

import copy
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from models.shadow import ExpectedChange, parse_expected_changes
from streams.app import TRACK_LABEL, WorkerService, worker_service
from tests.deploy.conftest import (
    POD_KINDS,
    REPO,
    Manifest,
    Rendered,
    assert_scan_clean,
    checkov,
    component,
    container_env,
    containers,
    helm_template,
    kube_version,
    load_manifests,
    pod_spec,
    run,
    seconds,
    settings_in,
    tool,
)
from tests.unit.test_observability_config import METRIC_NAME, exported_names

PRICING_TOML = REPO / "deploy" / "canary" / "pricing.toml"
ARGO_CRDS = Path(__file__).parent / "schemas" / "argo-rollouts-v1.9.1"
SCRAPE_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.kubernetes.yml"

# pricing.toml threshold -> the analysis metric that holds it, and how its success condition compares.
THRESHOLDS = {
    "max_divergence_ratio": ("shadow-divergence", "<="),
    "max_errors": ("shadow-errors", "<="),
    "max_lag": ("shadow-lag", "<="),
    "min_items_compared": ("shadow-items-compared", ">="),
    "max_processing_p99_ratio": ("shadow-processing-p99-ratio", "<="),
}
# Deterministic pricing: one divergence or one failed record is a bug. Lag, compared items and p99 may miss
# once (see the comments in pricing-canary-analysis.yaml).
FAILURE_LIMITS = {
    "shadow-divergence": 0,
    "shadow-errors": 0,
    "shadow-lag": 1,
    "shadow-items-compared": 1,
    "shadow-processing-p99-ratio": 1,
}
# What the shadow needs a pod to carry beyond the catalog worker's own pod.
CANARY_ENV = {"FEASTFLOW_TRACK_FILE", "FEASTFLOW_SHADOW_LABEL", "FEASTFLOW_SHADOW_EXPECT"}
CANARY_VOLUME = "podinfo"
# Argo Rollouts labels each revision's pods with this hash: k8s.io/apimachinery's SafeEncodeString alphabet.
REVISION_LABEL = "rollouts-pod-template-hash"
REVISION_HASH = re.compile(r"[bcdfghjklmnpqrstvwxz2456789]+")
KAFKA_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
CONDITION = re.compile(r"result\[0\] (<=|>=|>) (\S+)")
# A row of the vendored files' table: | `file` | `upstream path` | `git blob` |
VENDORED_ROW = re.compile(r"^\| `([\w.-]+)` \| `[\w./-]+` \| `([0-9a-f]{40})` \|$", re.MULTILINE)


def rollout(env: Rendered) -> Manifest:
    return env.named("Rollout", "-worker-catalog")


def analysis(env: Rendered) -> Manifest:
    return env.named("AnalysisTemplate", "-pricing-canary")


def metrics(env: Rendered) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in analysis(env)["spec"]["metrics"]}


def canary(env: Rendered) -> dict[str, Any]:
    return dict(rollout(env)["spec"]["strategy"]["canary"])


def rendered_with(environment: str, *extra: str) -> list[Manifest]:
    result = helm_template(environment, *extra)
    assert result.returncode == 0, result.stderr
    return load_manifests(result.stdout)


def pricing_toml() -> dict[str, Any]:
    return tomllib.loads(PRICING_TOML.read_text())


# The workload


def test_the_catalog_worker_is_a_rollout_and_every_other_worker_a_deployment(env: Rendered) -> None:
    assert rollout(env)["apiVersion"] == "argoproj.io/v1alpha1"
    assert container_env(containers(rollout(env))[0], env)["FEASTFLOW_WORKER_SERVICE"] == WorkerService.CATALOG
    others = [w for w in env.workers() if w is not rollout(env)]
    assert others and all(w["kind"] == "Deployment" for w in others)


def _without_canary(template: dict[str, Any]) -> dict[str, Any]:
    """A Rollout's pod template less what only the canary adds."""
    template = copy.deepcopy(template)
    spec = template["spec"]
    (container,) = spec["containers"]
    container["env"] = [e for e in container["env"] if e["name"] not in CANARY_ENV]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != CANARY_VOLUME]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != CANARY_VOLUME]
    for constraint in spec["topologySpreadConstraints"]:
        constraint["matchLabelKeys"] = ["pod-template-hash"]  # each controller's own revision label
    for variable in container["env"]:
        if variable["name"] == "FEASTFLOW_WORKER_GENERATION":  # a generation is a revision: the same label
            variable["valueFrom"]["fieldRef"]["fieldPath"] = "metadata.labels['pod-template-hash']"
    return template


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_with_the_canary_off_the_catalog_worker_is_a_plain_deployment_with_the_same_pod(
    environment: str, rendered: dict[str, Rendered]
) -> None:
    plain = rendered_with(environment, "--set", "pricingCanary.enabled=false")
    assert not {d["kind"] for d in plain} & {"Rollout", "AnalysisTemplate"}
    (catalog,) = [d for d in plain if d["kind"] in POD_KINDS and d["metadata"]["name"].endswith("-worker-catalog")]
    assert catalog["kind"] == "Deployment"
    assert catalog["spec"]["template"] == _without_canary(rollout(rendered[environment])["spec"]["template"])


# The release: one shadow pod, its analysis, then promotion or abort


def test_a_release_runs_one_shadow_pod_then_its_analysis_then_promotes(env: Rendered) -> None:
    strategy = canary(env)
    steps = strategy["steps"]
    assert [next(iter(step)) for step in steps] == ["setWeight", "analysis"]  # nothing after: promotion
    # Without trafficRouting (a stream consumer has no traffic) the controller refuses setCanaryScale; weight 1
    # with a surge of 1 makes exactly one canary pod and leaves every stable pod in place.
    assert steps[0] == {"setWeight": 1}
    assert "trafficRouting" not in strategy
    assert (strategy["maxSurge"], strategy["maxUnavailable"]) == (1, 0)  # as the Deployments roll
    (template,) = steps[1]["analysis"]["templates"]
    assert template == {"templateName": analysis(env)["metadata"]["name"]}
    args = {a["name"]: a["value"] for a in steps[1]["analysis"]["args"]}
    assert args.keys() == {a["name"] for a in analysis(env)["spec"]["args"]}
    assert args["namespace"] == rollout(env)["metadata"]["namespace"]


def test_a_candidate_that_fails_or_hangs_is_aborted_and_the_stable_pods_stay(env: Rendered) -> None:
    spec = rollout(env)["spec"]
    orders = env.named("Deployment", "-worker-orders")
    assert spec["progressDeadlineAbort"] is True
    assert spec["progressDeadlineSeconds"] == orders["spec"]["progressDeadlineSeconds"]  # table recovery time
    # A basic canary's abort sets its weight to 0: the shadow is scaled down at once. The abort delay only
    # applies with trafficRouting, where 0 would mean never scaling it down.
    assert "abortScaleDownDelaySeconds" not in canary(env)


# The pod: its track, its consumer group, its expected changes


def _labels_file(labels: dict[str, str]) -> str:
    """A downward-API labels file, as the kubelet writes it."""
    return "\n".join(f'{name}="{value}"' for name, value in sorted(labels.items()))


def test_pods_learn_their_track_from_the_labels_the_rollout_gives_them(env: Rendered, tmp_path: Path) -> None:
    strategy = canary(env)
    assert strategy["canaryMetadata"] == {"labels": {TRACK_LABEL: WorkerService.SHADOW.value}}
    assert strategy["stableMetadata"] == {"labels": {TRACK_LABEL: "stable"}}
    (container,) = containers(rollout(env))
    variables = container_env(container, env)
    track_file = Path(variables["FEASTFLOW_TRACK_FILE"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(track_file.parent))
    volume = next(v for v in pod_spec(rollout(env))["volumes"] if v["name"] == mount["name"])
    assert volume["downwardAPI"]["items"] == [{"path": track_file.name, "fieldRef": {"fieldPath": "metadata.labels"}}]

    pod_labels = rollout(env)["spec"]["template"]["metadata"]["labels"]
    local = tmp_path / track_file.name
    expected = {"canaryMetadata": WorkerService.SHADOW, "stableMetadata": WorkerService.CATALOG}
    for metadata, service in expected.items():
        local.write_text(_labels_file({**pod_labels, **strategy[metadata]["labels"], REVISION_LABEL: "5b7c9d"}))
        in_pod = {n: v for n, v in variables.items() if not v.startswith("<")}
        assert worker_service(settings_in({**in_pod, "FEASTFLOW_TRACK_FILE": str(local)})) is service, metadata


def test_each_candidate_gets_a_consumer_group_of_its_own_revision(env: Rendered) -> None:
    (container,) = containers(rollout(env))
    variables = container_env(container, env)
    assert variables["FEASTFLOW_SHADOW_LABEL"] == f"<field metadata.labels['{REVISION_LABEL}']>"
    config = env.named("ConfigMap", "feastflow")["data"]
    hash_ = "bcdfghjklmnpqrstvwxz2456789"  # every character Argo Rollouts may put in it
    assert REVISION_HASH.fullmatch(hash_)
    settings = settings_in({**config, "FEASTFLOW_SHADOW_LABEL": hash_})
    group = WorkerService.SHADOW.app_id(settings)
    assert group != WorkerService.CATALOG.app_id(settings)
    for table in ("restaurants", "items", "pricing"):  # Faust names changelog topics after the group
        assert KAFKA_TOPIC.fullmatch(f"{group}-{table}-changelog")


def test_expected_changes_reach_the_shadow_and_the_analysis_record(env: Rendered) -> None:
    def declared(manifests: list[Manifest], rendered: Rendered) -> tuple[str, str]:
        (workload,) = [m for m in manifests if m["kind"] == "Rollout"]
        (container,) = containers(workload)
        (step,) = [s for s in workload["spec"]["strategy"]["canary"]["steps"] if "analysis" in s]
        arg = next(a["value"] for a in step["analysis"]["args"] if a["name"] == "expected-changes")
        return container_env(container, rendered)["FEASTFLOW_SHADOW_EXPECT"], arg

    on_pod, on_record = declared(env.manifests, env)
    assert on_pod == on_record and parse_expected_changes(on_pod) == ()  # nothing declared: no price may change
    rule = '[{"ratio": 1.1, "category": "Desserts", "city": "blr"}]'
    on_pod, on_record = declared(
        rendered_with(env.environment, "--set-json", f"pricingCanary.expectedChanges={rule}"), env
    )
    assert on_pod == on_record
    assert parse_expected_changes(on_pod) == (ExpectedChange(1.1, city="blr", category="Desserts"),)


# The analysis


def test_the_analysis_holds_the_thresholds_of_pricing_toml(env: Rendered) -> None:
    toml = pricing_toml()
    assert THRESHOLDS.keys() == toml["thresholds"].keys()
    by_name = metrics(env)
    for key, (name, operator) in THRESHOLDS.items():
        found = CONDITION.fullmatch(by_name[name]["successCondition"])
        assert found, by_name[name]["successCondition"]
        assert found.group(1) == operator, name
        assert float(found.group(2)) == toml["thresholds"][key], name


def test_the_analysis_runs_to_the_catch_up_and_window_of_pricing_toml(env: Rendered) -> None:
    toml = pricing_toml()
    catch_up, window, interval = toml["catch_up"]["timeout_s"], toml["window"]["seconds"], toml["window"]["interval_s"]
    for name, metric in metrics(env).items():
        assert seconds(metric["interval"]) == interval, name
        measured_for = metric["count"] * interval
        if "initialDelay" in metric:  # needs the candidate caught up: measured over the window after the deadline
            assert (seconds(metric["initialDelay"]), measured_for) == (catch_up, window), name
        else:  # holds throughout: from the start, through the catch-up and the window
            assert measured_for == catch_up + window, name
    assert {n for n, m in metrics(env).items() if "initialDelay" not in m} == {"shadow-divergence", "shadow-errors"}
    slack_ms = re.search(r"plus (\d+) ms of slack", PRICING_TOML.read_text())
    assert slack_ms, "pricing.toml no longer states the p99 slack"
    p99_query = metrics(env)["shadow-processing-p99-ratio"]["provider"]["prometheus"]["query"]
    assert f"- {int(slack_ms.group(1)) / 1000})" in p99_query


def test_failure_limits_are_zero_for_what_pricing_cannot_get_wrong(env: Rendered) -> None:
    assert {name: m["failureLimit"] for name, m in metrics(env).items()} == FAILURE_LIMITS
    # Only the p99 ratio can be neither passed nor failed (a NaN): one such measurement, then a person decides.
    inconclusive = {name: m["inconclusiveLimit"] for name, m in metrics(env).items() if "inconclusiveLimit" in m}
    assert inconclusive == {"shadow-processing-p99-ratio": 1}
    for name, metric in metrics(env).items():
        assert ("failureCondition" in metric) == (name in inconclusive), name


def _queries(env: Rendered) -> dict[str, str]:
    return {name: m["provider"]["prometheus"]["query"] for name, m in metrics(env).items()}


def test_the_analysis_queries_only_metrics_the_code_exports(env: Rendered) -> None:
    known = exported_names()
    for name, query in _queries(env).items():
        named = set(METRIC_NAME.findall(query))
        assert named, name
        assert named <= known, f"{name} queries metrics nobody exports: {sorted(named - known)}"


def test_the_analysis_selects_series_by_labels_the_scrape_and_the_code_give(env: Rendered, tmp_path: Path) -> None:
    from streams.worker import build_worker

    worker_label = rollout(env)["spec"]["template"]["metadata"]["labels"]["feastflow.io/worker"]
    for name, query in _queries(env).items():
        # {{args.namespace}} is filled in by Argo Rollouts when the AnalysisRun starts.
        selectors = re.findall(r"\{([^}]*)\}", query.replace("{{args.namespace}}", "ARG"))
        assert selectors, name
        for selector in selectors:
            assert 'namespace="ARG"' in selector and f'service="{worker_label}"' in selector, name
    # Both scrape set-ups give the namespace and the feastflow.io/worker label as `service`.
    relabels = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0]["relabel_configs"]
    assert {r.get("target_label") for r in relabels} >= {"namespace", "service"}
    monitor = rendered_with("production", "--set", "metrics.serviceMonitor.enabled=true")
    (service_monitor,) = [d for d in monitor if d["kind"] == "ServiceMonitor"]
    for endpoint in service_monitor["spec"]["endpoints"]:
        service = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "service")
        assert service["sourceLabels"] == ["__meta_kubernetes_pod_label_feastflow_io_worker"]
    # The p99 compares the agents the shadow and the catalog service run (their processing histogram's label).
    agents = set(re.findall(r'agent="(\w+)"', _queries(env)["shadow-processing-p99-ratio"]))
    built = set()
    for service in (WorkerService.SHADOW, WorkerService.CATALOG):
        data = tmp_path / service.value
        settings = settings_in({"FEASTFLOW_WORKER_SERVICE": service.value, "FEASTFLOW_DATA": str(data)})
        built |= set(build_worker(settings).app.agents) & {"shadow", "catalog"}
    assert agents == built == {"shadow", "catalog"}


# Where the shadow pod runs: scraped, and allowed to reach Kafka and Redis like the catalog worker


def test_the_shadow_pod_is_scraped_and_let_through_like_the_catalog_worker(env: Rendered) -> None:
    template = rollout(env)["spec"]["template"]
    shadow_labels = {**template["metadata"]["labels"], **canary(env)["canaryMetadata"]["labels"], REVISION_LABEL: "x"}
    service = env.named("Service", "-worker-catalog")
    assert service["spec"]["selector"].items() <= shadow_labels.items()
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    (policy,) = [
        p
        for p in env.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items() <= shadow_labels.items()
    ]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component(rollout(env))
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    config = env.named("ConfigMap", "feastflow")["data"]
    assert {int(server.rsplit(":", 1)[1]) for server in config["FEASTFLOW_KAFKA"].split(",")} <= ports
    if "FEASTFLOW_REDIS_URL" in config:  # the shadow reads the stable read model
        assert (urlparse(config["FEASTFLOW_REDIS_URL"]).port or 6379) in ports
    budget = env.named("PodDisruptionBudget", "-worker-catalog")
    assert budget["spec"]["selector"]["matchLabels"].items() <= shadow_labels.items()
    for monitor in env.of_kind("ServiceMonitor"):
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


# Validity: Argo Rollouts' CRD schemas, and the pod as Kubernetes and checkov see a Deployment's


def _strict(schema: Any) -> Any:
    """The schema, refusing fields it does not name, as `kubectl apply` does (strict field validation); the API
    server would otherwise drop them silently, and a misspelt field would just not take effect."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    names_fields = "properties" in schema and "additionalProperties" not in schema
    if names_fields and not schema.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


def _crd_validator(filename: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((ARGO_CRDS / filename).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft4Validator(_strict(version["schema"]["openAPIV3Schema"]))


@pytest.fixture(scope="module")
def argo_schemas() -> dict[str, jsonschema.protocols.Validator]:
    return {
        "Rollout": _crd_validator("rollout-crd.yaml"),
        "AnalysisTemplate": _crd_validator("analysis-template-crd.yaml"),
    }


def _schema_errors(validators: dict[str, jsonschema.protocols.Validator], manifest: Manifest) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validators[manifest["kind"]].iter_errors(manifest)
    ]


def test_the_rollout_and_its_analysis_match_the_argo_rollouts_schemas(
    env: Rendered, argo_schemas: dict[str, jsonschema.protocols.Validator]
) -> None:
    for manifest in (rollout(env), analysis(env)):
        assert not _schema_errors(argo_schemas, manifest), manifest["kind"]


def test_the_argo_schema_check_rejects_a_misspelt_field_and_a_wrong_type(
    env: Rendered, argo_schemas: dict[str, jsonschema.protocols.Validator]
) -> None:
    misspelt = copy.deepcopy(rollout(env))
    strategy = misspelt["spec"]["strategy"]["canary"]
    strategy["canaryMetdata"] = strategy.pop("canaryMetadata")
    assert any("canaryMetdata" in error for error in _schema_errors(argo_schemas, misspelt))
    wrong_type = copy.deepcopy(analysis(env))
    wrong_type["spec"]["metrics"][0]["failureLimit"] = []
    assert _schema_errors(argo_schemas, wrong_type)


def test_the_vendored_crds_are_the_upstream_files() -> None:
    table = VENDORED_ROW.findall((ARGO_CRDS / "README.md").read_text())
    assert {name for name, _ in table} == {"rollout-crd.yaml", "analysis-template-crd.yaml", "LICENSE"}
    for name, blob in table:
        data = (ARGO_CRDS / name).read_bytes()
        assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == blob, name  # git hash-object


def _as_deployment(workload: Manifest) -> Manifest:
    """The Rollout as the Deployment it replaces: same metadata, selector and pod template."""
    spec = workload["spec"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": workload["metadata"],
        "spec": {"replicas": spec["replicas"], "selector": spec["selector"], "template": spec["template"]},
    }


def test_the_rollout_pod_passes_the_kubernetes_schema_and_the_security_scan(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    # kubernetes-validate has no schema for a Rollout and checkov skips the kind: check its pod as a Deployment's,
    # beside the NetworkPolicies that must cover it.
    pods = tmp_path / "rollout-pods.yaml"
    documents = [d for env in rendered.values() for d in (_as_deployment(rollout(env)), *env.of_kind("NetworkPolicy"))]
    pods.write_text(yaml.safe_dump_all(documents))
    validated = run([tool("kubernetes-validate"), "-k", kube_version(), "--strict", "--quiet", str(pods)])
    assert validated.returncode == 0 and not validated.stdout.strip(), validated.stdout + validated.stderr
    results = checkov("--directory", str(tmp_path), "--framework", "kubernetes")
    assert_scan_clean(results)
    scanned = {c["resource"] for c in results["passed_checks"]}
    rollouts = [rollout(env)["metadata"] for env in rendered.values()]
    assert {f"Deployment.{m['namespace']}.{m['name']}" for m in rollouts} <= scanned


# What the chart refuses


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("--set", "pricingCanary.prometheusAddress="), "pricingCanary.prometheusAddress is required"),
        (("--set", "workers.catalog.service=orders"), "exactly one worker with service catalog"),
    ],
    ids=["no-prometheus", "no-catalog-worker"],
)
def test_the_chart_refuses_a_canary_it_cannot_run(values: tuple[str, ...], message: str) -> None:
    result = helm_template("staging", *values)
    assert result.returncode != 0
    assert message in result.stderr

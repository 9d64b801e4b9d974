"""The chart's rollout, shutdown, image, secret and placement rules, on what it renders for each environment."""

import re

import pytest
import yaml

from tests.deploy.conftest import (
    CHART,
    ENVIRONMENTS,
    POD_KINDS,
    WORKLOAD_KINDS,
    Rendered,
    component,
    container_env,
    containers,
    helm_template,
    load_manifests,
    pod_spec,
    run,
    settings_in,
    tool,
)

DIGEST_REF = re.compile(r"@sha256:[0-9a-f]{64}$")
COMMIT_TAG_REF = re.compile(r":[0-9a-f]{7,40}$")
# Room to exit after the drain: process teardown, closing Kafka and Redis clients.
EXIT_MARGIN_S = 5


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_helm_lint_passes(environment: str) -> None:
    result = run([tool("helm"), "lint", "--strict", str(CHART), "-f", str(CHART / f"values-{environment}.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_deployment_rolls_one_new_pod_at_a_time_with_a_deadline(env: Rendered) -> None:
    for deployment in env.of_kind("Deployment"):
        spec = deployment["spec"]
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        assert spec["progressDeadlineSeconds"] > 0


def test_every_image_is_pinned_by_digest_or_commit(env: Rendered) -> None:
    images = {c["image"] for w in env.workloads() for c in containers(w)}
    assert images
    for image in images:
        assert DIGEST_REF.search(image) or COMMIT_TAG_REF.search(image), image


@pytest.mark.parametrize("tag", ["latest", "v1.2.3", "main"])
def test_a_mutable_tag_is_refused(tag: str) -> None:
    result = helm_template("staging", "--set", f"image.tag={tag}", "--set", "image.digest=")
    assert result.returncode != 0
    assert "refused" in result.stderr


def test_a_digest_wins_over_the_tag() -> None:
    digest = "sha256:" + "ab" * 32
    result = helm_template("staging", "--set", f"image.digest={digest}")
    assert result.returncode == 0, result.stderr
    images = {
        c["image"]
        for doc in yaml.safe_load_all(result.stdout)
        if doc and doc["kind"] in WORKLOAD_KINDS
        for c in containers(doc)
    }
    assert images == {f"registry.example.com/feastflow/feastflow@{digest}"}


def test_api_grace_period_outlasts_pre_stop_and_drain(env: Rendered) -> None:
    api = env.named("Deployment", "-api")
    (container,) = containers(api)
    settings = settings_in(container_env(container, env))
    hook = container.get("lifecycle", {}).get("preStop", {})
    hook_sleep = hook.get("sleep", {}).get("seconds", 0)
    needed = hook_sleep + settings.pre_stop_s + settings.drain_s + EXIT_MARGIN_S
    assert pod_spec(api)["terminationGracePeriodSeconds"] >= needed
    # Without a pre-stop wait somewhere, endpoints and the ingress would still route to a closing pod.
    assert hook_sleep + settings.pre_stop_s > 0


def test_chart_refuses_a_grace_period_shorter_than_the_drain() -> None:
    result = helm_template("staging", "--set", "api.terminationGracePeriodSeconds=20")
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds" in result.stderr


def test_worker_replicas_never_exceed_partitions(env: Rendered) -> None:
    partitions = int(env.named("ConfigMap", "feastflow")["data"]["FEASTFLOW_PARTITIONS"])
    for worker in env.workers():
        assert 1 <= worker["spec"]["replicas"] <= partitions


def test_chart_refuses_more_worker_replicas_than_partitions() -> None:
    result = helm_template("staging", "--set", "config.partitions=2", "--set", "workers.catalog.replicas=3")
    assert result.returncode != 0
    assert "config.partitions" in result.stderr


def test_a_further_worker_service_is_one_values_entry() -> None:
    result = helm_template("staging", "--set", "workers.pricing-shadow.service=pricing-shadow")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    shadow = [d for d in docs if d["metadata"]["name"].endswith("-worker-pricing-shadow")]
    assert sorted(d["kind"] for d in shadow) == ["Deployment", "PodDisruptionBudget", "Service"]
    deployment = next(d for d in shadow if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in containers(deployment)[0]["env"]}
    assert env["FEASTFLOW_WORKER_SERVICE"] == "pricing-shadow"


def test_each_worker_service_has_its_own_workload_and_a_name_per_pod(env: Rendered) -> None:
    services = []
    for worker in env.workers():
        (container,) = containers(worker)
        variables = container_env(container, env)
        services.append(variables["FEASTFLOW_WORKER_SERVICE"])
        assert variables["FEASTFLOW_WORKER_NAME"] == "<field metadata.name>"
        # The only member of its generation's group: restarted after a crash, it takes its partitions back.
        assert variables["FEASTFLOW_STATIC_MEMBERSHIP"] == "1"
        data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == variables["FEASTFLOW_DATA"])
        volume = next(v for v in pod_spec(worker)["volumes"] if v["name"] == data_mount["name"])
        assert "emptyDir" in volume
    assert sorted(services) == ["catalog", "orders"]


def test_secrets_are_only_referenced(env: Rendered) -> None:
    assert not env.of_kind("Secret")
    secret_names = {"FEASTFLOW_JWT_SECRET", "FEASTFLOW_PG_DSN"}
    for workload in env.workloads():
        for container in containers(workload):
            variables = container_env(container, env)
            for name in secret_names & variables.keys():
                assert variables[name].startswith("<secret "), (workload["metadata"]["name"], name)
    for config in env.of_kind("ConfigMap"):
        assert not secret_names & config["data"].keys()
        assert not any("password" in str(value).lower() for value in config["data"].values())


def test_pods_run_unprivileged_on_a_read_only_root(env: Rendered) -> None:
    for workload in env.workloads():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        mounts_by_volume = {v["name"]: v for v in spec["volumes"]}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in mounts_by_volume[tmp["name"]]
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_api_metrics_from_several_processes_go_to_an_empty_dir(env: Rendered) -> None:
    api = env.named("Deployment", "-api")
    (container,) = containers(api)
    multiproc_dir = container_env(container, env)["PROMETHEUS_MULTIPROC_DIR"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == multiproc_dir)
    assert "emptyDir" in next(v for v in pod_spec(api)["volumes"] if v["name"] == mount["name"])


# The label each controller gives one revision's pods, which the spread's matchLabelKeys must name.
REVISION_LABEL = {"Deployment": "pod-template-hash", "Rollout": "rollouts-pod-template-hash"}


def test_pods_spread_over_nodes_and_zones(env: Rendered) -> None:
    for workload in env.long_running():
        constraints = pod_spec(workload)["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in constraints:
            selector = constraint["labelSelector"]["matchLabels"]
            assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
            assert constraint["matchLabelKeys"] == [REVISION_LABEL[workload["kind"]]]


def test_every_deployment_and_rollout_has_a_disruption_budget(env: Rendered) -> None:
    budgets = [b["spec"]["selector"]["matchLabels"] for b in env.of_kind("PodDisruptionBudget")]
    for workload in env.long_running():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), workload["metadata"]["name"]


def test_the_api_autoscales_and_leaves_replicas_to_the_autoscaler(env: Rendered) -> None:
    api = env.named("Deployment", "-api")
    (hpa,) = env.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert "replicas" not in api["spec"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    streams = metrics["Pods"]["pods"]
    assert streams["metric"]["name"] == "feastflow_api_sse_clients"
    assert 0 < int(streams["target"]["averageValue"]) <= 20_000  # one process holds at most 20,000 files


def test_the_metric_the_autoscaler_scales_on_is_one_the_adapter_rules_serve(env: Rendered) -> None:
    (hpa,) = env.of_kind("HorizontalPodAutoscaler")
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    rules = yaml.safe_load((CHART.parents[1] / "prometheus" / "adapter-rules.yaml").read_text())
    served = {rule["name"]["as"] for rule in rules["rules"]["custom"]}
    assert wanted <= served


def test_migrations_run_as_a_hook_before_install_and_upgrade(env: Rendered) -> None:
    job = env.named("Job", "-migrate")
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    steps = [c["args"] for c in containers(job)]
    assert steps == [["migrate"], ["topics"]]
    account = env.named("ServiceAccount", "-migrate")
    assert pod_spec(job)["serviceAccountName"] == account["metadata"]["name"]
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert "migrate.yaml" in env.files and "feastflow.yaml" in env.files


def test_ingress_streams_sse_unbuffered_and_only_the_public_api(env: Rendered) -> None:
    ingresses = {i["metadata"]["name"]: i for i in env.of_kind("Ingress")}
    paths = sorted(p["path"] for i in ingresses.values() for rule in i["spec"]["rules"] for p in rule["http"]["paths"])
    assert paths == ["/v1", "/v1/cities/[^/]+/menu/stream", "/v1/orders/[^/]+/stream"]
    for ingress in ingresses.values():
        annotations = ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
        assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_ingress_limits_each_client_and_never_logs_the_streams_tokens(env: Rendered) -> None:
    ingresses = {i["metadata"]["name"].removeprefix("feastflow"): i for i in env.of_kind("Ingress")}
    assert set(ingresses) == {"", "-streams"}
    for ingress in ingresses.values():
        assert int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rps"]) > 0
    streams = ingresses["-streams"]["metadata"]["annotations"]
    assert int(streams["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    # The only routes that accept ?access_token= are the only ones whose requests the controller does not log.
    assert streams["nginx.ingress.kubernetes.io/enable-access-log"] == "false"
    assert "nginx.ingress.kubernetes.io/limit-connections" not in ingresses[""]["metadata"]["annotations"]


def test_no_network_policy_peer_list_is_empty(env: Rendered) -> None:
    """An empty from:/to: admits anything; a rule either names its peers or is absent."""
    for policy in env.of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), policy["metadata"]["name"]
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), policy["metadata"]["name"]


@pytest.mark.parametrize("peers", ["kafkaPeers", "redisPeers", "postgresPeers", "dns"])
def test_chart_refuses_an_empty_destination_list(peers: str) -> None:
    result = helm_template("staging", "--set", f"networkPolicy.{peers}=null")
    assert result.returncode != 0
    assert "reads as anywhere" in result.stderr


@pytest.mark.parametrize("sources", ["prometheus", "ingressController"])
def test_an_empty_source_list_admits_nobody(sources: str) -> None:
    result = helm_template("staging", "--set", f"networkPolicy.{sources}=null")
    assert result.returncode == 0, result.stderr
    policies = [m for m in load_manifests(result.stdout) if m["kind"] == "NetworkPolicy"]
    assert policies
    for policy in policies:
        assert all(rule.get("from") for rule in policy["spec"]["ingress"]), policy["metadata"]["name"]
        assert all(rule.get("to") for rule in policy["spec"]["egress"]), policy["metadata"]["name"]


def test_pods_are_annotated_for_prometheus(env: Rendered) -> None:
    for workload in env.long_running():
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        ports = {p["containerPort"] for c in containers(workload) for p in c["ports"]}
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) in ports


def test_the_service_monitor_finds_every_service_by_a_named_port(rendered: dict[str, Rendered]) -> None:
    production = rendered["production"]
    (monitor,) = production.of_kind("ServiceMonitor")
    endpoint_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    for service in production.of_kind("Service"):
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert endpoint_ports & {p["name"] for p in service["spec"]["ports"]}
    assert not rendered["staging"].of_kind("ServiceMonitor")


def test_config_changes_roll_the_pods(env: Rendered) -> None:
    before = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in env.long_running()
    }
    result = helm_template(env.environment, "--set", "config.partitions=7")
    assert result.returncode == 0, result.stderr
    for doc in yaml.safe_load_all(result.stdout):
        if doc and doc["kind"] in POD_KINDS:
            assert (
                doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != before[doc["metadata"]["name"]]
            )


def test_component_labels_are_the_ones_the_policies_select(env: Rendered) -> None:
    policy_components = {
        p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in env.of_kind("NetworkPolicy")
    }
    assert {component(w) for w in env.workloads()} <= policy_components


def test_production_replicates_every_topic_the_project_creates(rendered: dict[str, Rendered]) -> None:
    config = rendered["production"].named("ConfigMap", "feastflow")["data"]
    assert settings_in(config).replication_factor == 3  # what feastflow topics and Faust's changelogs get


def test_a_one_pod_worker_hands_over_to_each_revision_and_a_bigger_one_rebalances(env: Rendered) -> None:
    """One pod per worker service: each revision is a generation of its own (streams/handover.py), named by the
    label its controller gives the revision's pods. Several pods fall back to rolling by rebalancing."""
    for worker in env.workers():
        (container,) = containers(worker)
        variables = container_env(container, env)
        revision = "rollouts-pod-template-hash" if worker["kind"] == "Rollout" else "pod-template-hash"
        assert worker["spec"]["replicas"] == 1
        assert variables["FEASTFLOW_WORKER_HANDOVER"] == "1"
        assert variables["FEASTFLOW_WORKER_GENERATION"] == f"<field metadata.labels['{revision}']>"
    bigger = load_manifests(helm_template(env.environment, "--set", "workers.orders.replicas=2").stdout)
    (orders,) = [m for m in bigger if m["kind"] == "Deployment" and m["metadata"]["name"].endswith("worker-orders")]
    (container,) = containers(orders)
    variables = {v["name"]: v.get("value") for v in container["env"]}
    assert variables["FEASTFLOW_WORKER_HANDOVER"] == "0" and "FEASTFLOW_WORKER_GENERATION" not in variables
    assert variables["FEASTFLOW_STATIC_MEMBERSHIP"] == "0"  # several pods: a rolled one leaves its group at once


def test_the_ingress_controller_has_room_for_50000_streams_with_one_pod_lost() -> None:
    values = yaml.safe_load((CHART.parent / "ingress-nginx-values.yaml").read_text())["controller"]
    config = values["config"]
    per_pod = int(config["worker-processes"]) * int(config["max-worker-connections"])
    assert (values["replicaCount"] - 1) * per_pod >= 2 * 50_000  # two connections per proxied stream
    assert int(config["max-worker-open-files"]) > int(config["max-worker-connections"])

"""What the chart asks of the code is what the code does: commands, settings, ports and probe paths are
read from the code (the CLI parser, Settings.from_env, api.routes, the worker's pages), not restated."""

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from aiohttp import web

from api import ops_views
from api.routes import setup_routes
from models.cities import parse_cities
from ops.cli import main as feastflow_main
from tests.deploy.conftest import Rendered, component, container_env, containers, names_settings_read, settings_in


def _exit_code(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return feastflow_main(argv)
        except SystemExit as exit_:
            return int(exit_.code or 0)


def test_every_container_command_is_a_feastflow_command(env: Rendered) -> None:
    assert _exit_code(["no-such-command", "--help"]) != 0
    commands = {c["args"][0] for w in env.workloads() for c in containers(w)}
    assert commands == {"api", "worker", "migrate", "topics"}
    for command in commands:
        assert _exit_code([command, "--help"]) == 0, command


def test_every_feastflow_variable_the_chart_sets_is_read_by_the_code(env: Rendered) -> None:
    known = names_settings_read()
    for workload in env.workloads():
        for container in containers(workload):
            unknown = {n for n in container_env(container, env) if n.startswith("FEASTFLOW_")} - known
            assert not unknown, f"{workload['metadata']['name']}/{container['name']}: {sorted(unknown)}"


def test_a_misspelt_setting_is_caught() -> None:
    assert "FEASTFLOW_DRAIN_SECONDS" not in names_settings_read()
    assert "FEASTFLOW_DRAIN_S" in names_settings_read()


def test_cities_and_partitions_parse_as_the_code_reads_them(env: Rendered) -> None:
    config = env.named("ConfigMap", "feastflow")["data"]
    settings = settings_in(config)
    assert settings.cities == parse_cities(config["FEASTFLOW_CITIES"])
    assert settings.partitions == int(config["FEASTFLOW_PARTITIONS"]) >= 1
    assert len({c.code for c in settings.cities}) == len(settings.cities)


def _api_route_path(handler: Callable[..., Any]) -> str:
    app = web.Application()
    setup_routes(app)
    paths = [
        r.resource.canonical
        for r in app.router.routes()
        if r.handler is handler and r.method == "GET" and r.resource is not None
    ]
    assert len(paths) == 1
    return paths[0]


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == port))


def test_api_probes_hit_the_routes_that_mean_alive_and_ready_on_the_port_it_listens_on(env: Rendered) -> None:
    api = env.named("Deployment", "-api")
    (container,) = containers(api)
    settings = settings_in(container_env(container, env))
    assert settings.api_host == "0.0.0.0"
    expected = {
        "livenessProbe": _api_route_path(ops_views.healthz),
        "readinessProbe": _api_route_path(ops_views.readyz),
        "startupProbe": _api_route_path(ops_views.healthz),
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert _port_number(container, get["port"]) == settings.api_port, probe
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == _api_route_path(ops_views.metrics)
    assert int(annotations["prometheus.io/port"]) == settings.api_port


@pytest.fixture(scope="module")
def worker_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The worker's own web pages, view name -> path, from a worker built (not started) by the code."""
    from streams.worker import build_worker

    settings = settings_in({"FEASTFLOW_DATA": str(tmp_path_factory.mktemp("worker"))})
    worker = build_worker(settings)
    return {view.view_name: path for path, view in worker.app.web.views.items()}


def test_worker_probes_hit_the_pages_that_mean_alive_and_ready(env: Rendered, worker_pages: dict[str, str]) -> None:
    for worker in env.workers():
        (container,) = containers(worker)
        settings = settings_in(container_env(container, env))
        for probe, view in (("livenessProbe", "live"), ("startupProbe", "health"), ("readinessProbe", "ready")):
            get = container[probe]["httpGet"]
            assert get["path"] == worker_pages[view], probe
            assert _port_number(container, get["port"]) == settings.worker_web_port, probe
        annotations = worker["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] == worker_pages["metrics"]


def test_workers_listen_on_the_pod_address_in_the_cluster(env: Rendered, tmp_path: Path) -> None:
    from streams.worker import build_worker

    (container,) = containers(env.workers()[0])
    # Probes and Prometheus reach the pod IP; listening there and nowhere else keeps the operator views off
    # every other interface (loopback stays the default outside a cluster).
    assert container_env(container, env)["FEASTFLOW_WORKER_WEB_HOST"] == "<field status.podIP>"
    variables = {n: v for n, v in container_env(container, env).items() if not v.startswith("<")}
    variables["FEASTFLOW_DATA"] = str(tmp_path)
    variables["FEASTFLOW_WORKER_WEB_HOST"] = "10.1.2.3"  # what the downward API fills in
    settings = settings_in(variables)
    app = build_worker(settings).app
    assert app.conf.web_port == settings.worker_web_port
    assert app.conf.web_bind == "10.1.2.3"


def _egress_ports(env: Rendered, pod_component: str) -> set[int]:
    (policy,) = [
        p
        for p in env.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == pod_component
    ]
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"] if p["protocol"] == "TCP"}


def test_network_policies_let_pods_reach_the_endpoints_they_are_configured_with(env: Rendered) -> None:
    config = env.named("ConfigMap", "feastflow")["data"]
    kafka_ports = {int(server.rsplit(":", 1)[1]) for server in config["FEASTFLOW_KAFKA"].split(",")}
    redis_url = config.get("FEASTFLOW_REDIS_URL")
    for workload in env.workloads():
        allowed = _egress_ports(env, component(workload))
        assert kafka_ports <= allowed
        assert 53 in allowed
        if redis_url and component(workload) != "migrate":
            assert (urlparse(redis_url).port or 6379) in allowed


def test_network_policies_admit_the_ingress_controller_and_prometheus_on_the_serving_ports(env: Rendered) -> None:
    for workload in env.long_running():
        (policy,) = [
            p
            for p in env.of_kind("NetworkPolicy")
            if p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component(workload)
        ]
        (container,) = containers(workload)
        admitted = {_port_number(container, p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        served = {p["containerPort"] for p in container["ports"]}
        assert admitted == served

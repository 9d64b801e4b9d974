"""The Prometheus rules and Grafana dashboards are checked like code: promtool validates and unit-tests the
rules, and every query must name a metric the code exports (or a recording rule), so a renamed metric cannot
silently blank a dashboard or disarm an alert."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import api.metrics
import core.build
import streams.metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
METRIC_NAME = re.compile(r"\bfeastflow[_:][a-z0-9_:]*")
PROMETHEUS_OWN = {"up"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make test` installs Prometheus (deploy/local/prometheus.sh up)"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def exported_names() -> set[str]:
    """Every series name the code can export (a counter's _total, a histogram's _bucket/_count/_sum...)."""
    assert api.metrics and streams.metrics and core.build  # imported for their registrations
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("feastflow")
        for suffix in suffixes.get(family.type, ("",))
    }


def rules() -> list[dict[str, str]]:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (path.name, target["expr"])
        for path in DASHBOARDS
        for panel in json.loads(path.read_text())["panels"]
        for target in panel["targets"]
    ]


def test_rules_pass_promtool_check() -> None:
    checked = promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_passes_its_promtool_unit_tests() -> None:
    tested = promtool("test", "rules", "tests/alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_case() -> None:
    cases = yaml.safe_load((PROMETHEUS / "tests" / "alerts.test.yml").read_text())["tests"]
    tested = {check["alertname"] for case in cases for check in case.get("alert_rule_test", []) if check["exp_alerts"]}
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts and alerts == tested, f"alerts without a firing case: {sorted(alerts - tested)}"


def test_the_local_prometheus_config_is_valid(tmp_path: Path) -> None:
    template = (PROMETHEUS / "prometheus.local.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        template.replace("@DATA@", str(tmp_path)).replace("@RULES@", str(PROMETHEUS / "rules")).replace("@PORT@", "9")
    )
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_kubernetes_scrape_config_names_jobs_as_the_rules_expect() -> None:
    """Debian's promtool is built without Kubernetes discovery, so this one is checked by hand: the relabelling
    must turn the chart's component label into the job names the rules and dashboards use."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.kubernetes.yml").read_text())
    relabels = config["scrape_configs"][0]["relabel_configs"]
    job_rule = next(r for r in relabels if r.get("target_label") == "job")
    jobs = {
        re.fullmatch(job_rule["regex"], component).expand(job_rule["replacement"].replace("$1", r"\1"))  # type: ignore[union-attr]
        for component in ("api", "worker")
    }
    assert jobs == {"feastflow-api", "feastflow-worker"}
    for relabel in relabels:
        re.compile(relabel.get("regex", "(.*)"))
    assert {Path(f).name for f in config["rule_files"]} == {p.name for p in RULE_FILES}


@pytest.mark.parametrize("kind", ["rules", "dashboards"])
def test_every_query_names_a_metric_that_exists(kind: str) -> None:
    known = exported_names() | recorded_names() | PROMETHEUS_OWN
    if kind == "rules":
        queries = [(rule.get("record") or rule["alert"], rule["expr"]) for rule in rules()]
    else:
        queries = dashboard_queries()
    assert queries
    unknown = {(where, name) for where, expr in queries for name in METRIC_NAME.findall(expr) if name not in known}
    assert not unknown, f"queries name metrics nobody exports: {sorted(unknown)}"


def test_the_dashboards_are_generated_from_their_source_and_valid() -> None:
    checked = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "grafana" / "generate.py"), "--check"], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        cells = set()
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "feastflow-prometheus" and panel["targets"], panel["title"]
            grid = panel["gridPos"]
            cell = (grid["x"], grid["y"])
            assert cell not in cells, f"{path.name}: panels overlap at {cell}"
            cells.add(cell)
    assert len(uids) == len(DASHBOARDS) == 5
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "feastflow-prometheus"

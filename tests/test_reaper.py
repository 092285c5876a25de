"""The sweep over FakeKube (conflicts, failures, budget, snapshots) and the reap HTTP handler."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from common import metrics, naming, reaper, tick
from common.config import Settings
from common.health import reporting
from common.kube import ConfigMap, KubeError, NotFound, Unreachable
from common.reap_target import NotACloudEvent, parse_event, serve_reap
from common.reaper import Summary, sweep
from common.reservation import Reservation, decode, encode, format_time
from tests.fakes import FakeKube

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({"REAPER_GRACE": "30m", "AFFINITY_INFLIGHT_WINDOW": "30s"})
NS = naming.AFFINITY_NAMESPACE


def value(
    pod: str,
    *,
    namespace: str = "ns",
    slot: int = 0,
    claimed: timedelta = timedelta(hours=1),
    missing: timedelta | None = None,
    pool: str = "default",
    at: datetime = NOW,
) -> str:
    return encode(Reservation(
        pool=pool, namespace=namespace, deployment="demo", slot=slot,
        vm_name=f"vk-{namespace}-demo-{slot}", pod=pod, node="cocoon-a",
        updated_at=at - claimed, missing_since=None if missing is None else at - missing,
    ))  # fmt: skip


def add_pool(kube: FakeKube, pool: str, data: dict[str, str], **annotations: str) -> None:
    name = naming.affinity_configmap_name(pool)
    kube.configmaps[(NS, name)] = ConfigMap(
        name=name, namespace=NS, data=data, labels=naming.affinity_labels(pool),
        annotations=annotations, resource_version=str(len(kube.configmaps) + 100),
    )  # fmt: skip


def stored(kube: FakeKube, pool: str = "default") -> dict[str, str]:
    return kube.configmaps[(NS, naming.affinity_configmap_name(pool))].data


def pod(
    name: str, namespace: str = "ns", phase: str = "Running", **annotations: str
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"nodeName": "cocoon-a"}, "status": {"phase": phase}}


def releases(pool: str) -> float:
    sample = REGISTRY.get_sample_value("cocoon_webhook_affinity_releases_total", {"pool": pool})
    return sample or 0.0


def conflicts(pool: str) -> float:
    sample = REGISTRY.get_sample_value("cocoon_webhook_affinity_conflicts_total", {"pool": pool})
    return sample or 0.0


def summary_of(**fields: Any) -> dict[str, Any]:
    base = {"pools": 1, "checked": 0, "marked": 0, "cleared": 0, "released": 0, "malformed": 0,
            "errors": 0, "retries": 0, "dryRun": False}  # fmt: skip
    return {**base, **fields}


def sweeps(result: str) -> float:
    sample = REGISTRY.get_sample_value("cocoon_webhook_reaper_sweeps_total", {"result": result})
    return sample or 0.0


class Mono:
    """A monotonic clock the test moves; each read can also advance it by `step`."""

    def __init__(self, step: float = 0.0) -> None:
        self.t = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


def test_wire_names() -> None:
    assert naming.MALFORMED_SINCE_ANNOTATION == "cocoonstack.io/malformed-since"
    assert Summary(pools=2, checked=9, marked=1, cleared=2, released=3, malformed=1,
                   errors=0).encode() == (
        b'{"pools":2,"checked":9,"marked":1,"cleared":2,"released":3,"malformed":1,'
        b'"errors":0,"retries":0,"dryRun":false}'
    )  # fmt: skip


def test_one_sweep_marks_clears_and_releases(kube: FakeKube) -> None:
    kube.pods = [pod("alive"), pod("back"), pod("done", phase="Succeeded")]
    add_pool(kube, "default", {
        "ns.demo.0": value("alive", slot=0),
        "ns.demo.1": value("back", slot=1, missing=timedelta(minutes=3)),
        "ns.demo.2": value("gone", slot=2),
        "ns.demo.3": value("gone-long", slot=3, missing=timedelta(hours=1)),
        "ns.demo.4": value("gone-lately", slot=4, missing=timedelta(minutes=29)),
        "ns.demo.5": value("young", slot=5, claimed=timedelta(seconds=3)),
        "ns.demo.6": value("done", slot=6),
    })  # fmt: skip
    before = stored(kube)
    released_before = releases("default")

    summary = sweep(kube, SETTINGS, NOW)

    assert summary.to_json() == summary_of(checked=7, marked=1, cleared=1, released=1)
    after = stored(kube)
    assert set(after) == set(before) - {"ns.demo.3"}
    assert decode(after["ns.demo.2"]).missing_since == NOW
    assert decode(after["ns.demo.1"]).missing_since is None
    for key in ("ns.demo.0", "ns.demo.4", "ns.demo.5", "ns.demo.6"):
        assert after[key] == before[key]
    assert kube.calls == ["list_configmaps", "list_pods", "replace_configmap"]
    assert releases("default") == released_before + 1
    cm = kube.configmaps[(NS, "cocoon-affinity-default")]
    assert cm.labels == naming.affinity_labels("default")


def test_sweep_is_idempotent(kube: FakeKube) -> None:
    add_pool(kube, "default", {"ns.demo.0": value("gone"), "ns.demo.1": value("gone-too", slot=1,
             missing=timedelta(hours=1))})  # fmt: skip
    first = sweep(kube, SETTINGS, NOW)
    assert (first.marked, first.released) == (1, 1)
    kube.calls.clear()
    again = sweep(kube, SETTINGS, NOW)
    assert (again.checked, again.marked, again.released) == (1, 0, 0)
    assert "replace_configmap" not in kube.calls


def test_requests_do_not_grow_with_entries(kube: FakeKube) -> None:
    namespaces = ["a", "b", "c"]
    # 1,500 entries a namespace: each pool's ConfigMap stays under the API server's 1 MiB limit
    # once the sweep has marked the missing ones (2,000 would not: FakeKube refuses that PUT)
    kube.pods = [pod(f"p-{ns}-{i}", ns) for ns in namespaces for i in range(0, 1500, 7)]
    for p in range(5):
        add_pool(kube, f"pool{p}", {
            f"{ns}.demo.{i}": value(f"p-{ns}-{i}", namespace=ns, slot=i)
            for ns in namespaces for i in range(1500)
        })  # fmt: skip
    summary = sweep(kube, SETTINGS, NOW)
    assert summary.checked == 5 * 3 * 1500
    assert summary.errors == 0
    # One configmap LIST, one pod LIST per namespace shared by all pools, one PUT per pool.
    assert kube.calls.count("list_configmaps") == 1
    assert kube.calls.count("list_pods") == len(namespaces)
    assert kube.calls.count("replace_configmap") == 5
    assert len(kube.calls) == 1 + len(namespaces) + 5


def test_namespaces_of_in_flight_and_malformed_entries_are_not_listed(kube: FakeKube) -> None:
    add_pool(kube, "default", {
        "young.demo.0": value("p", namespace="young", claimed=timedelta(seconds=1)),
        "bad": "{",
    })  # fmt: skip
    summary = sweep(kube, SETTINGS, NOW)
    assert summary.checked == 2
    assert "list_pods" not in kube.calls


def test_only_labelled_configmaps_and_the_label_pool(kube: FakeKube) -> None:
    add_pool(kube, "gpu", {"ns.demo.0": value("gone", missing=timedelta(hours=1), pool="other")})
    kube.configmaps[(NS, "cocoon-affinity-nolabel")] = ConfigMap(
        name="cocoon-affinity-nolabel", namespace=NS,
        data={"ns.demo.0": value("gone", missing=timedelta(hours=1))},
        labels={naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE, naming.POOL_KEY: ""},
    )  # fmt: skip
    gpu_before, other_before = releases("gpu"), releases("other")
    summary = sweep(kube, SETTINGS, NOW)
    assert summary.pools == 1
    assert summary.released == 1
    assert stored(kube, "gpu") == {}
    assert stored(kube, "nolabel") != {}
    assert releases("gpu") == gpu_before + 1
    assert releases("other") == other_before


def test_pod_lists_are_shared_across_pools(kube: FakeKube) -> None:
    add_pool(kube, "a", {"x.demo.0": value("p", namespace="x")})
    add_pool(kube, "b", {"x.demo.0": value("p", namespace="x"),
                         "y.demo.0": value("p", namespace="y")})  # fmt: skip
    sweep(kube, SETTINGS, NOW)
    assert kube.calls.count("list_pods") == 2


def test_stale_snapshot_is_listed_again(kube: FakeKube) -> None:
    add_pool(kube, "a", {"x.demo.0": value("p", namespace="x")})
    add_pool(kube, "b", {"x.demo.0": value("p", namespace="x")})
    clock = Mono()

    def slow_put() -> None:
        clock.t += SETTINGS.inflight_window_s / 2 + 0.1

    kube.script["replace_configmap"] = [slow_put]
    sweep(kube, SETTINGS, NOW, monotonic=clock)
    assert kube.calls == ["list_configmaps", "list_pods", "replace_configmap", "list_pods",
                          "replace_configmap"]  # fmt: skip


def test_reclaimed_entry_survives_a_conflict(kube: FakeKube) -> None:
    add_pool(kube, "default", {
        "ns.demo.0": value("gone", missing=timedelta(hours=1)),
        "ns.demo.1": value("gone-1", slot=1, missing=timedelta(hours=1)),
    })  # fmt: skip
    key = (NS, "cocoon-affinity-default")

    def mutate_reclaims() -> None:
        # mutate hands slot 0 to a new pod between the reaper's read and its write
        cm = kube.configmaps[key]
        cm.data = {**cm.data, "ns.demo.0": value("new", claimed=timedelta(0),
                                                 at=NOW + timedelta(seconds=4))}  # fmt: skip
        cm.resource_version = "999"

    kube.script["replace_configmap"] = [mutate_reclaims]
    conflicts_before = conflicts("default")
    summary = sweep(kube, SETTINGS, NOW)
    assert kube.calls == ["list_configmaps", "list_pods", "replace_configmap", "get_configmap",
                          "replace_configmap"]  # fmt: skip
    assert decode(stored(kube)["ns.demo.0"]).pod == "new"
    assert "ns.demo.1" not in stored(kube)
    assert summary.released == 1
    assert conflicts("default") == conflicts_before + 1


def test_overlapping_sweeps_release_once(kube: FakeKube) -> None:
    add_pool(kube, "default", {"ns.demo.0": value("gone", missing=timedelta(hours=1))})
    before = releases("default")
    inner: list[Summary] = []
    kube.script["replace_configmap"] = [lambda: inner.append(sweep(kube, SETTINGS, NOW))]
    outer = sweep(kube, SETTINGS, NOW)
    assert inner[0].released == 1
    assert outer.released == 0
    assert outer.errors == 0
    assert releases("default") == before + 1
    assert stored(kube) == {}


def test_too_many_conflicts_count_an_error(kube: FakeKube) -> None:
    add_pool(kube, "a", {"ns.demo.0": value("gone")})
    add_pool(kube, "b", {"ns.demo.0": value("gone")})
    key = (NS, "cocoon-affinity-a")

    def bump() -> None:
        kube.configmaps[key].resource_version += "x"

    kube.script["replace_configmap"] = [bump] * reaper.MAX_ATTEMPTS
    partial_before = sweeps("partial")
    summary = sweep(kube, SETTINGS, NOW)
    assert kube.calls.count("replace_configmap") == reaper.MAX_ATTEMPTS + 1
    assert summary.errors == 1
    assert summary.marked == 1  # pool b still got its mark
    assert decode(stored(kube, "b")["ns.demo.0"]).missing_since == NOW
    assert sweeps("partial") == partial_before + 1


TRANSIENT = [
    pytest.param(KubeError("update: 500", 500), id="server-error"),
    pytest.param(KubeError("update: 429", 429), id="throttled"),
    pytest.param(Unreachable("update: timeout"), id="unreachable"),
]


def retried(cause: str) -> float:
    labels = {"component": "reaper", "cause": cause}
    return REGISTRY.get_sample_value("cocoon_webhook_api_retries_total", labels) or 0.0


@pytest.mark.parametrize("error", TRANSIENT)
@pytest.mark.parametrize("verb", ["replace_configmap", "list_pods", "list_configmaps"])
def test_a_transient_failure_is_retried_and_reported(
    kube: FakeKube, error: KubeError, verb: str
) -> None:
    add_pool(kube, "a", {"ns.demo.0": value("gone")})
    kube.script[verb] = [error]
    cause = "no_answer" if error.status is None else str(error.status)
    before = retried(cause)
    summary = sweep(kube, SETTINGS, NOW)
    assert (summary.errors, summary.retries, summary.marked) == (0, 1, 1)
    assert summary.to_json()["retries"] == 1
    assert retried(cause) == before + 1
    assert decode(stored(kube, "a")["ns.demo.0"]).missing_since == NOW


@pytest.mark.parametrize("error", TRANSIENT)
def test_lasting_write_failures_leave_the_pool_for_the_next_sweep(
    kube: FakeKube, error: KubeError
) -> None:
    add_pool(kube, "a", {"ns.demo.0": value("gone")})
    add_pool(kube, "b", {"ns.demo.0": value("gone")})
    kube.script["replace_configmap"] = [error] * (reaper.TRANSIENT_RETRIES + 1)
    summary = sweep(kube, SETTINGS, NOW)
    assert (summary.errors, summary.retries, summary.marked) == (1, reaper.TRANSIENT_RETRIES, 1)
    assert kube.calls.count("replace_configmap") == reaper.TRANSIENT_RETRIES + 2
    assert decode(stored(kube, "a")["ns.demo.0"]).missing_since is None


@pytest.mark.parametrize(
    ("error", "errors"),
    [
        pytest.param(KubeError("update: 403", 403), 1, id="forbidden"),
        pytest.param(KubeError("update: 422", 422), 1, id="invalid"),
        pytest.param(NotFound("update: 404", 404), 0, id="deleted-meanwhile"),
    ],
)
def test_final_write_failures_are_not_retried(
    kube: FakeKube, error: KubeError, errors: int
) -> None:
    add_pool(kube, "a", {"ns.demo.0": value("gone")})
    add_pool(kube, "b", {"ns.demo.0": value("gone")})
    kube.script["replace_configmap"] = [error]
    summary = sweep(kube, SETTINGS, NOW)
    assert (summary.errors, summary.retries, summary.marked) == (errors, 0, 1)
    assert kube.calls.count("replace_configmap") == 2
    assert decode(stored(kube, "a")["ns.demo.0"]).missing_since is None


def test_failed_namespace_leaves_its_entries_and_counts_once(kube: FakeKube) -> None:
    add_pool(kube, "a", {"bad-ns.demo.0": value("gone", namespace="bad-ns",
                                                missing=timedelta(hours=1)),
                         "ok.demo.0": value("gone", namespace="ok")})  # fmt: skip
    add_pool(kube, "b", {"bad-ns.demo.1": value("gone", namespace="bad-ns", slot=1)})
    healthy = kube.list_pods

    def list_pods(namespace: str | None, field_selector: str, timeout: float) -> Any:
        if namespace == "bad-ns":
            kube.calls.append("list_pods")
            raise KubeError("list pods bad-ns: 500", 500)
        return healthy(namespace, field_selector, timeout)

    kube.list_pods = list_pods  # type: ignore[method-assign]
    partial_before = sweeps("partial")
    summary = sweep(kube, SETTINGS, NOW)
    assert (summary.errors, summary.retries) == (1, reaper.TRANSIENT_RETRIES)
    assert (summary.checked, summary.marked, summary.released) == (3, 1, 0)
    assert "bad-ns.demo.0" in stored(kube, "a")
    assert decode(stored(kube, "b")["bad-ns.demo.1"]).missing_since is None
    assert kube.calls.count("list_pods") == reaper.TRANSIENT_RETRIES + 2
    assert sweeps("partial") == partial_before + 1


def test_configmaps_not_listed(kube: FakeKube) -> None:
    kube.script["list_configmaps"] = [Unreachable("list configmaps: connection refused")] * (
        reaper.TRANSIENT_RETRIES + 1
    )
    error_before = sweeps("error")
    summary = sweep(kube, SETTINGS, NOW)
    assert not summary.listed
    assert summary.to_json()["errors"] == 1
    assert sweeps("error") == error_before + 1


def test_dry_run_counts_without_writing(kube: FakeKube) -> None:
    add_pool(kube, "default", {"ns.demo.0": value("gone"),
                               "ns.demo.1": value("x", slot=1, missing=timedelta(hours=1)),
                               "bad": "[]"})  # fmt: skip
    before, released_before = dict(stored(kube)), releases("default")
    summary = sweep(kube, SETTINGS, NOW, dry_run=True)
    assert summary.to_json() == summary_of(
        checked=3, marked=1, released=1, malformed=1, dryRun=True
    )
    assert stored(kube) == before
    assert "replace_configmap" not in kube.calls
    assert releases("default") == released_before


def test_malformed_values_go_after_the_grace(kube: FakeKube) -> None:
    add_pool(kube, "default", {"bad": "nope", "ok.demo.0": value("p", namespace="ok")})
    kube.pods = [pod("p", "ok")]
    first = sweep(kube, SETTINGS, NOW)
    assert (first.malformed, first.released) == (1, 0)
    cm = kube.configmaps[(NS, "cocoon-affinity-default")]
    assert json.loads(cm.annotations[naming.MALFORMED_SINCE_ANNOTATION]) == {
        "bad": format_time(NOW)}  # fmt: skip
    later = NOW + timedelta(seconds=SETTINGS.reaper_grace_s)
    second = sweep(kube, SETTINGS, later)
    assert (second.malformed, second.released) == (1, 1)
    cm = kube.configmaps[(NS, "cocoon-affinity-default")]
    assert set(cm.data) == {"ok.demo.0"}
    assert naming.MALFORMED_SINCE_ANNOTATION not in cm.annotations


def test_budget_stops_new_pools(kube: FakeKube) -> None:
    for name in ("a", "b", "c"):
        add_pool(kube, name, {"ns.demo.0": value("gone")})
    clock = Mono()

    def slow_put() -> None:
        clock.t += reaper.SWEEP_BUDGET_S + 1

    kube.script["replace_configmap"] = [slow_put]
    summary = sweep(kube, SETTINGS, NOW, monotonic=clock)
    assert summary.pools == 3
    assert summary.marked == 1
    assert summary.errors == 2
    assert kube.calls.count("replace_configmap") == 1


def test_pod_carrying_the_vm_name_keeps_the_entry(kube: FakeKube) -> None:
    kube.pods = [pod("renamed", **{naming.VM_NAME_ANNOTATION: "vk-ns-demo-0"})]
    add_pool(kube, "default", {"ns.demo.0": value("<unnamed>", missing=timedelta(hours=1))})
    summary = sweep(kube, SETTINGS, NOW)
    assert summary.cleared == 1
    assert decode(stored(kube)["ns.demo.0"]).missing_since is None


# --- the CloudEvent ------------------------------------------------------------------------------

BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "cocoon-reaper-29381-abcde",
    "ce-source": "/apis/batch/v1/namespaces/cocoon-system/cronjobs/cocoon-reaper",
    "ce-type": "io.cocoonstack.webhook.reap",
    "content-type": "application/json",
}


def structured(**attrs: Any) -> tuple[dict[str, str], bytes]:
    doc = {"specversion": "1.0", "id": "1", "source": "/x", "type": "t", **attrs}
    return {"Content-Type": "application/cloudevents+json; charset=utf-8"}, json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("headers", "body", "dry_run"),
    [
        pytest.param(BINARY, b"{}", False, id="binary-empty-object"),
        pytest.param(BINARY, b"", False, id="binary-no-body"),
        pytest.param({**BINARY, "content-type": ""}, b"", False, id="binary-no-content-type"),
        pytest.param(BINARY, b'{"dryRun": true}', True, id="binary-dry-run"),
        pytest.param(BINARY, b'{"dryRun": false, "other": 1}', False, id="binary-extra-data"),
        pytest.param({k.upper(): v for k, v in BINARY.items()}, b"{}", False,
                     id="header-case-ignored"),
        pytest.param(*structured(), False, id="structured-no-data"),
        pytest.param(*structured(data={}), False, id="structured-empty"),
        pytest.param(*structured(data={"dryRun": True}), True, id="structured-dry-run"),
        pytest.param(*structured(datacontenttype="application/json",
                                 data_base64="eyJkcnlSdW4iOnRydWV9"), True,
                     id="structured-base64"),
    ],
)  # fmt: skip
def test_cloudevents_accepted(headers: dict[str, str], body: bytes, dry_run: bool) -> None:
    tick = parse_event(headers, body)
    assert tick.dry_run is dry_run
    assert tick.id


def test_binary_attributes_are_read() -> None:
    tick = parse_event(BINARY, b"{}")
    assert (tick.id, tick.source, tick.type) == (
        BINARY["ce-id"], BINARY["ce-source"], BINARY["ce-type"])  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        pytest.param({"content-type": "application/json"}, b"{}",
                     "no ce-* headers and content type is not application/cloudevents+json",
                     id="plain-json"),
        pytest.param({k: v for k, v in BINARY.items() if k != "ce-id"}, b"{}", "missing ce-id",
                     id="binary-without-id"),
        pytest.param({"ce-type": "t"}, b"", "missing ce-specversion, ce-id, ce-source",
                     id="binary-only-type"),
        pytest.param({**BINARY, "ce-source": ""}, b"", "missing ce-source", id="empty-source"),
        pytest.param({**BINARY, "ce-specversion": "9.9"}, b"", "Found invalid specversion 9.9",
                     id="unknown-specversion"),
        pytest.param(*structured(id=""), "missing id", id="structured-empty-id"),
        pytest.param(structured()[0], b'{"specversion":"1.0"}', "missing id, source, type",
                     id="structured-missing"),
        pytest.param(structured()[0], b"{", "structured-mode body is not JSON", id="not-json"),
        pytest.param(structured()[0], b"[]", "structured-mode body is not a JSON object",
                     id="structured-array"),
        pytest.param(BINARY, b"[1]", "data is not a JSON object", id="data-array"),
        pytest.param({**BINARY, "content-type": "text/plain"}, b"go", "data is not a JSON object",
                     id="data-text"),
        pytest.param(BINARY, b'{"dryRun": "yes"}', "data.dryRun is not a boolean",
                     id="dry-run-not-bool"),
    ],
)  # fmt: skip
def test_not_a_cloudevent(headers: dict[str, str], body: bytes, reason: str) -> None:
    with pytest.raises(NotACloudEvent) as caught:
        parse_event(headers, body)
    assert caught.value.reason == reason


# --- the handler ---------------------------------------------------------------------------------


def handler_client(kube: FakeKube) -> TestClient:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await serve_reap(
            Request(scope, receive), kube, SETTINGS, reporting(kube), clock=lambda: NOW
        )
        await response(scope, receive, send)

    return TestClient(app)


@pytest.fixture
def client(kube: FakeKube) -> TestClient:
    # Not entered as a context manager: this bare ASGI app has no lifespan to run.
    return handler_client(kube)


def test_handler_sweeps_on_a_cloudevent(kube: FakeKube, client: TestClient) -> None:
    add_pool(kube, "default", {"ns.demo.0": value("gone")})
    reply = client.post("/", content=b"{}", headers=BINARY)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.content == (b'{"pools":1,"checked":1,"marked":1,"cleared":0,"released":0,'
                             b'"malformed":0,"errors":0,"retries":0,"dryRun":false}')  # fmt: skip


def test_handler_dry_run(kube: FakeKube, client: TestClient) -> None:
    add_pool(kube, "default", {"ns.demo.0": value("gone")})
    reply = client.post("/", content=b'{"dryRun":true}', headers=BINARY)
    assert reply.json()["dryRun"] is True
    assert reply.json()["marked"] == 1
    assert "replace_configmap" not in kube.calls


def test_handler_503_when_configmaps_cannot_be_listed(kube: FakeKube, client: TestClient) -> None:
    retries = reaper.TRANSIENT_RETRIES
    kube.script["list_configmaps"] = [Unreachable("list configmaps: timeout")] * (retries + 1)
    reply = client.post("/", content=b"{}", headers=BINARY)
    assert reply.status_code == 503
    assert reply.json() == {"pools": 0, "checked": 0, "marked": 0, "cleared": 0, "released": 0,
                            "malformed": 0, "errors": 1, "retries": retries,
                            "dryRun": False}  # fmt: skip


def test_handler_500_on_a_bug(kube: FakeKube, client: TestClient) -> None:
    def boom() -> None:
        raise RuntimeError("boom\nsecond line")

    kube.script["list_configmaps"] = [boom]
    error_before = sweeps("error")
    reply = client.post("/", content=b"{}", headers=BINARY)
    assert reply.status_code == 500
    assert reply.json() == {"error": "boom second line"}
    assert sweeps("error") == error_before + 1


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        pytest.param("GET", "/", 405, "405 method not allowed", id="get-root"),
        pytest.param("POST", "/reap", 404, "404 page not found", id="other-path"),
        pytest.param("GET", "/healthz", 200, "ok", id="healthz"),
        pytest.param("GET", "/readyz", 200, "ready", id="readyz"),
        pytest.param("POST", "/", 400, "not a CloudEvent: no ce-* headers and content type is "
                     "not application/cloudevents+json", id="not-a-cloudevent"),
    ],
)  # fmt: skip
def test_handler_routes(client: TestClient, method: str, path: str, status: int, body: str) -> None:
    reply = client.request(method, path, content=b"{}")
    assert (reply.status_code, reply.text) == (status, body)


def test_handler_serves_metrics(client: TestClient) -> None:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert "cocoon_webhook_reaper_sweep_duration_seconds" in reply.text


# --- the CronJob's sender ------------------------------------------------------------------------


def test_tick_sends_the_cronjob_event() -> None:
    request = tick.build_request("http://reaper/", "cocoon-reaper-123-abcde")
    headers = {k.lower(): v for k, v in request.header_items()}
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "cocoon-reaper-123-abcde",
        "ce-source": "/apis/batch/v1/namespaces/cocoon-system/cronjobs/cocoon-reaper",
        "ce-type": "io.cocoonstack.webhook.reap",
        "content-type": "application/json",
    }
    assert request.data == b"{}"
    assert request.get_method() == "POST"
    assert tick.build_request("http://reaper/", "x", dry_run=True).data == b'{"dryRun":true}'
    # What the reap handler makes of it.
    assert parse_event(headers, b"{}").type == "io.cocoonstack.webhook.reap"


def test_tick_without_an_answer_fails(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.loadgen import free_port

    assert tick.main([f"http://127.0.0.1:{free_port()}/", "--timeout", "2"]) == 1
    assert "reap tick to" in capsys.readouterr().err


def last_success() -> float | None:
    return REGISTRY.get_sample_value("cocoon_webhook_reaper_last_success_timestamp_seconds")


def test_last_success_is_stamped_by_successful_real_sweeps_only(kube: FakeKube) -> None:
    add_pool(kube, "a", {"ns.demo.0": value("gone")})
    metrics.LAST_SUCCESSFUL_SWEEP.set(0)
    sweep(kube, SETTINGS, NOW, dry_run=True)
    assert last_success() == 0
    kube.script["list_configmaps"] = [Unreachable("list configmaps: connection refused")] * (
        reaper.TRANSIENT_RETRIES + 1
    )
    sweep(kube, SETTINGS, NOW)
    assert last_success() == 0
    before = time.time()
    sweep(kube, SETTINGS, NOW)
    stamp = last_success()
    assert stamp is not None and before <= stamp <= time.time()

"""kubectl cocoon against the emulator and a real control plane (test ids `[emulator]`,
`[real]`): what each command shows, what it writes, and that a write racing mutate loses nothing
(the guard is the resourceVersion, as for the webhooks).

Table outputs are compared with goldens in tests/golden/ (`UPDATE_GOLDEN=1` rewrites them).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from common import cli
from common.affinity import AffinityStore
from common.decisions import mutate as pods
from common.kube import ClientKubeApi, ConfigMap, KubeApi
from common.operator_view import human_duration
from common.pod import decode_pod
from common.reservation import Reservation, decode, encode
from tests.cluster import add_node, add_running_pod, cocoon_pod
from tests.control_plane.launcher import ControlPlane
from tests.control_plane.nodes import lift_not_ready_taint
from tests.control_plane.pytest_plugin import running
from tests.helpers import kubeconfig_for
from tests.kube_emulator.launcher import EmulatorProcess

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
SYSTEM = "cocoon-system"
LABELS = {"app.kubernetes.io/managed-by": "cocoon-webhook"}
MANAGED_BY = "app.kubernetes.io/managed-by=cocoon-webhook"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def entry(
    namespace: str,
    pod: str,
    node: str,
    *,
    pool: str = "default",
    deployment: str = "",
    slot: int = 0,
    claimed: timedelta = timedelta(hours=3),
    missing: timedelta | None = None,
) -> str:
    vm = f"vk-{namespace}-{deployment}-{slot}" if deployment else f"vk-{namespace}-{pod}"
    return encode(
        Reservation(
            pool=pool,
            namespace=namespace,
            deployment=deployment,
            slot=slot,
            vm_name=vm,
            pod=pod,
            node=node,
            updated_at=NOW - claimed,
            missing_since=None if missing is None else NOW - missing,
        )
    )


def put_configmap(core: Any, name: str, pool: str, data: dict[str, str]) -> None:
    body = {
        "metadata": {"name": name, "labels": {**LABELS, "cocoonstack.io/pool": pool}},
        "data": data,
    }
    core.create_namespaced_config_map(SYSTEM, body)


def data_of(core: Any, name: str) -> dict[str, str]:
    return dict(core.read_namespaced_config_map(name, SYSTEM).data or {})


@pytest.fixture(scope="module")
def real_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: the tables list every cocoon node it has."""
    with running(tmp_path_factory.mktemp("cli-control-plane")) as plane:
        core = kubernetes.client.CoreV1Api(plane.api_client())
        for namespace in ("team-a", SYSTEM):
            core.create_namespace({"metadata": {"name": namespace}})
        # Pods are refused until the controller has made the namespace's ServiceAccount.
        wait_until(lambda: has_default_service_account(core, "team-a"), "team-a's ServiceAccount")
        yield plane


@pytest.fixture(params=["emulator", pytest.param("real", marks=pytest.mark.control_plane)])
def backend(request: pytest.FixtureRequest) -> EmulatorProcess | ControlPlane:
    if request.param == "emulator":
        emulator: EmulatorProcess = request.getfixturevalue("emulator")
        return emulator
    plane: ControlPlane = request.getfixturevalue("real_plane")
    empty_real(kubernetes.client.CoreV1Api(plane.api_client()))
    return plane


def empty_real(core: Any) -> None:
    """What a test leaves behind on the module's control plane: gone before the next one."""
    core.delete_collection_namespaced_config_map(SYSTEM, label_selector=MANAGED_BY)
    for namespace in ("team-a", "default"):
        # Grace 0: no kubelet will ever confirm a graceful deletion.
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    core.delete_collection_node()
    wait_until(
        lambda: (
            not core.list_node().items
            and not core.list_pod_for_all_namespaces().items
            and not core.list_namespaced_config_map(SYSTEM, label_selector=MANAGED_BY).items
        ),
        "an empty control plane",
    )


def has_default_service_account(core: Any, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except kubernetes.client.ApiException:
        return False
    return True


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def node(backend: Any, core: Any, name: str, pool: str = "default", *, ready: bool = True) -> None:
    add_node(core, name, pool, ready=ready)
    if isinstance(backend, ControlPlane):
        # Admission tainted it not-ready; no kubelet and no node controller will lift it.
        lift_not_ready_taint(core.api_client, name)


@pytest.fixture
def core(backend: Any) -> Any:
    api = kubernetes.client.CoreV1Api(backend.api_client())
    if isinstance(backend, EmulatorProcess):
        api.create_namespace({"metadata": {"name": "team-a"}})
    node(backend, api, "cocoon-a")
    node(backend, api, "cocoon-b", ready=False)
    node(backend, api, "gpu-1", pool="gpu")
    api.patch_node("cocoon-b", {"spec": {"unschedulable": True}})
    return api


@pytest.fixture
def seeded(core: Any) -> Any:
    """Every state at NOW: live, in flight, missing, missing past the grace, malformed; pool
    `default` spans two ConfigMaps, as it may once pools are split."""
    add_running_pod(core, "demo-abc12", "cocoon-a", namespace="team-a")
    add_running_pod(core, "trainer", "gpu-1")
    put_configmap(
        core,
        "cocoon-affinity-default",
        "default",
        {
            "team-a.demo.0": entry("team-a", "demo-abc12", "cocoon-a", deployment="demo"),
            "team-a.demo.1": entry(
                "team-a", "demo-def34", "cocoon-b", deployment="demo", slot=1,
                claimed=timedelta(seconds=5),
            ),
            "team-a.demo.2": entry(
                "team-a", "demo-gone1", "cocoon-a", deployment="demo", slot=2,
                claimed=timedelta(days=3), missing=timedelta(minutes=12),
            ),
            "team-a._pod.solo": entry(
                "team-a", "solo", "cocoon-a", claimed=timedelta(days=40),
                missing=timedelta(hours=2),
            ),
        },
    )  # fmt: skip
    put_configmap(
        core,
        "cocoon-affinity.default.1",
        "default",
        {
            "team-a._pod.broken": "{oops",
            "team-a._pod.other": entry("team-a", "other", "cocoon-a", claimed=timedelta(days=2)),
        },
    )
    put_configmap(
        core,
        "cocoon-affinity-gpu",
        "gpu",
        {"default._pod.trainer": entry("default", "trainer", "gpu-1", pool="gpu")},
    )
    return core


def run(
    backend: Any, *argv: str, kube: KubeApi | None = None, now: datetime | None = NOW
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        list(argv),
        kube=kube or ClientKubeApi(backend.kubeconfig),
        env={"KUBECONFIG": backend.kubeconfig},
        out=out,
        err=err,
        now=(lambda: now) if now else (lambda: datetime.now(UTC)),
    )
    return code, out.getvalue(), err.getvalue()


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"),
     (600, "10m"), (10_799, "179m"), (10_800, "3h"), (4 * 3600 + 120, "4h2m"), (8 * 3600, "8h"),
     (47 * 3600, "47h"), (49 * 3600, "2d1h"), (8 * 86400, "8d"), (800 * 86400, "2y70d"),
     (9 * 365 * 86400, "9y")],
)  # fmt: skip
def test_ages_read_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


def test_reservations_table_shows_every_state(backend: Any, seeded: Any) -> None:
    code, out, _ = run(backend, "reservations", "-A")
    assert code == 0
    golden("cli_reservations.txt", out)


def test_reservations_wide(backend: Any, seeded: Any) -> None:
    code, out, _ = run(backend, "res", "-A", "-o", "wide")
    assert code == 0
    golden("cli_reservations_wide.txt", out)


def test_reservations_filters(backend: Any, seeded: Any) -> None:
    def keys(*argv: str) -> list[str]:
        code, out, _ = run(backend, "res", "-o", "json", *argv)
        assert code == 0
        return [item["key"] for item in json.loads(out)["items"]]

    assert keys("-A", "--state", "missing") == [
        "team-a._pod.other",
        "team-a._pod.solo",
        "team-a.demo.2",
    ]
    assert keys("-A", "--state", "malformed") == ["team-a._pod.broken"]
    assert keys("-A", "--node", "gpu-1") == ["default._pod.trainer"]
    assert keys("-A", "--pool", "gpu") == ["default._pod.trainer"]
    assert keys("-n", "team-a", "--state", "live") == ["team-a.demo.0"]
    # Without -n or -A, the kubeconfig context's namespace, as kubectl: `default` here.
    assert keys() == ["default._pod.trainer"]


def test_reservations_json_and_yaml_carry_the_entry(backend: Any, seeded: Any) -> None:
    _, out, _ = run(backend, "res", "-A", "--state", "missing", "-o", "json")
    items = json.loads(out)["items"]
    assert items[2] == {
        "pool": "default",
        "configMap": "cocoon-affinity-default",
        "key": "team-a.demo.2",
        "state": "missing",
        "due": False,
        "namespace": "team-a",
        "deployment": "demo",
        "slot": 2,
        "vmName": "vk-team-a-demo-2",
        "pod": "demo-gone1",
        "node": "cocoon-a",
        "updatedAt": "2026-12-03T12:00:00Z",
        "missingSince": "2026-12-06T11:48:00Z",
    }
    assert "missingSince" not in items[0]  # not marked by the reaper yet
    assert items[1]["due"] is True  # missing for 2h, past the 30m grace
    _, text, _ = run(backend, "res", "-A", "--state", "missing", "-o", "yaml")
    assert yaml.safe_load(text) == {"items": items}


def test_pools_table(backend: Any, seeded: Any) -> None:
    code, out, _ = run(backend, "pools")
    assert code == 0
    golden("cli_pools.txt", out)
    _, text, _ = run(backend, "pools", "-o", "json")
    default = json.loads(text)["items"][0]
    assert [cm["name"] for cm in default["configMaps"]] == [
        "cocoon-affinity-default",
        "cocoon-affinity.default.1",
    ]
    assert default["entries"] == 6
    assert default["nodes"][1] == {
        "name": "cocoon-b", "vms": 1, "inPool": True, "ready": False, "cordoned": True
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["emulator"], indirect=True)  # injects an API fault
def test_bad_arguments_and_api_errors_get_one_line(backend: Any, seeded: Any) -> None:
    code, _, err = run(backend, "release")
    assert (code, err) == (1, "error: give one entry: release KEY, or release --vm NAME\n")
    backend.fault("GET", "/api/v1/namespaces/cocoon-system/configmaps", status=503)
    code, _, err = run(backend, "res", "-A")
    assert code == 1
    assert err.startswith("error: list configmaps cocoon-system: 503 ServiceUnavailable")
    assert err.count("\n") == 1


@pytest.mark.parametrize("command", ["res", "pools", "sweep"])
def test_no_usable_kubeconfig_is_one_line_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """Loaded before the command runs: a sweep retried a bad kubeconfig as an API outage and
    printed a summary of zeros; the client's own words were "Service host/port is not set." and
    "'str' object does not support item assignment"."""
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    not_yaml = tmp_path / "passwd"
    not_yaml.write_text("root:x:0:0:root:/root:/bin/bash\n")
    cases = [
        ({}, "error: load kubeconfig: no KUBECONFIG, no ~/.kube/config, and not running in a "
             "cluster (Service host/port is not set.)\n"),
        ({"KUBECONFIG": str(not_yaml)},
         f"error: load kubeconfig: {not_yaml}: not a kubeconfig (TypeError: "),
        ({"KUBECONFIG": str(tmp_path / "absent")}, "error: load kubeconfig: "),
    ]  # fmt: skip
    for env, said in cases:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main([command], env=env, out=out, err=err)
        assert (code, out.getvalue()) == (1, ""), env
        assert err.getvalue().startswith(said), err.getvalue()
        assert err.getvalue().count("\n") == 1, err.getvalue()


def test_an_unreachable_api_server_says_why(tmp_path: Path) -> None:
    """Refused at once, said as refused (not "timeout after 30s"); the sweep's own failure is
    shown on the terminal, not lost as a bare log message."""
    from bench.loadgen import free_port

    config = kubeconfig_for(tmp_path / "config", f"https://127.0.0.1:{free_port()}")
    refused = "list configmaps cocoon-system: cannot connect: [Errno 111] Connection refused"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["res", "-A"], env={"KUBECONFIG": config}, out=out, err=err) == 1
    assert err.getvalue() == f"error: {refused}\n"
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["sweep"], env={"KUBECONFIG": config}, out=out, err=err) == 1
    assert err.getvalue() == (
        f"error: configmap list failed (error={refused})\n"
        "error: sweep failed: the affinity ConfigMaps could not be listed\n"
    )


# --- release -------------------------------------------------------------------------------------


def test_release_refuses_a_live_entry_unless_forced(backend: Any, seeded: Any) -> None:
    before = data_of(seeded, "cocoon-affinity-default")
    code, _, err = run(backend, "release", "team-a.demo.0")
    assert code == 1
    assert err == (
        "error: default/team-a.demo.0 (vm vk-team-a-demo-0, pod team-a/demo-abc12, node cocoon-a, "
        "live): its pod exists; releasing it would let another pod take this VM name. "
        "Pass --force to release it anyway\n"
    )
    code, _, err = run(backend, "release", "team-a.demo.1")
    assert code == 1 and "it was claimed moments ago, its pod may not be listed yet" in err
    assert data_of(seeded, "cocoon-affinity-default") == before

    code, out, _ = run(backend, "release", "team-a.demo.0", "--force")
    assert code == 0 and out.startswith("released default/team-a.demo.0")
    after = data_of(seeded, "cocoon-affinity-default")
    assert after == {k: v for k, v in before.items() if k != "team-a.demo.0"}


def test_release_by_vm_name_and_dry_run(backend: Any, seeded: Any) -> None:
    before = data_of(seeded, "cocoon-affinity-default")
    code, out, _ = run(backend, "release", "--vm", "vk-team-a-solo", "--dry-run")
    assert code == 0 and "would release default/team-a._pod.solo" in out
    assert data_of(seeded, "cocoon-affinity-default") == before
    code, _, _ = run(backend, "release", "--vm", "vk-team-a-solo")
    assert code == 0
    del before["team-a._pod.solo"]
    assert data_of(seeded, "cocoon-affinity-default") == before
    code, _, err = run(backend, "release", "--vm", "vk-team-a-solo")
    assert (code, err) == (1, "error: no reservation with VM vk-team-a-solo\n")
    # A malformed entry, in the pool's second ConfigMap, goes by its key.
    spare = data_of(seeded, "cocoon-affinity.default.1")
    code, out, _ = run(backend, "release", "team-a._pod.broken")
    assert code == 0 and out.startswith("released default/team-a._pod.broken (malformed:")
    del spare["team-a._pod.broken"]
    assert data_of(seeded, "cocoon-affinity.default.1") == spare


@pytest.mark.parametrize("backend", ["emulator"], indirect=True)
def test_dry_run_in_kubectl_spelling(backend: Any, seeded: Any) -> None:
    """`--dry-run=client|server` as kubectl takes it (it was refused with exit 2); a bare
    `--dry-run` before the key stays a flag."""
    before = data_of(seeded, "cocoon-affinity-default")
    for argv in (["--dry-run=client", "team-a._pod.solo"], ["--dry-run", "team-a._pod.solo"],
                 ["team-a._pod.solo", "--dry-run=server"]):  # fmt: skip
        code, out, _ = run(backend, "release", *argv)
        assert code == 0 and out.startswith("would release default/team-a._pod.solo"), argv
    assert data_of(seeded, "cocoon-affinity-default") == before
    with pytest.raises(SystemExit) as refused:
        run(backend, "release", "team-a._pod.solo", "--dry-run=maybe")
    assert refused.value.code == 2
    code, out, _ = run(backend, "release", "team-a._pod.solo", "--dry-run=none")
    assert code == 0 and out.startswith("released default/team-a._pod.solo")
    assert "team-a._pod.solo" not in data_of(seeded, "cocoon-affinity-default")


class Interleaved:
    """A KubeApi that runs `before_put` just before its first ConfigMap PUT: a webhook writing
    between the command's read and its write, the window the resourceVersion guard covers."""

    def __init__(self, inner: KubeApi, before_put: Callable[[], None]) -> None:
        self._inner = inner
        self._before_put: Callable[[], None] | None = before_put
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def replace_configmap(self, configmap: ConfigMap, timeout: float) -> ConfigMap:
        self.puts += 1
        hook, self._before_put = self._before_put, None
        if hook is not None:
            hook()
        return self._inner.replace_configmap(configmap, timeout)


def reserve(kube: KubeApi, pod: dict[str, Any]) -> pods.Draft:
    """One mutate admission through the real store (group commit, guarded writes)."""
    store = AffinityStore(kube, timedelta(seconds=30), clock=lambda: datetime.now(UTC))
    meta = pod["metadata"]
    intent = pods.plan("CREATE", "Pod", meta["namespace"], "", decode_pod(pod))
    assert isinstance(intent, pods.Intent)
    result = store.reserve(intent, time.monotonic() + 20, dry_run=False)
    assert isinstance(result, pods.Draft), result
    return result


def race_with_mutate(backend: Any, *argv: str) -> tuple[int, str, list[pods.Draft], int]:
    """Run the command while mutate admits 13 pods of pool default: the first lands between the
    command's read and its PUT (a certain 409), a dozen more race it from threads. Returns the
    exit code, stderr, the drafts stored (the first one first) and the command's PUTs."""
    kube = ClientKubeApi(backend.kubeconfig)
    first: list[pods.Draft] = []
    racing = Interleaved(
        kube, lambda: first.append(reserve(kube, cocoon_pod(name="first", namespace="team-a")))
    )
    with ThreadPoolExecutor(6) as threads:
        futures = [
            threads.submit(reserve, kube, cocoon_pod(name=f"racer-{i}", namespace="team-a"))
            for i in range(12)
        ]
        code, _, err = run(backend, *argv, kube=racing, now=None)
        reserved = first + [f.result() for f in futures]
    return code, err, reserved, racing.puts


def test_release_asks_which_when_two_configmaps_hold_the_entry(backend: Any, seeded: Any) -> None:
    twin = data_of(seeded, "cocoon-affinity-default")["team-a.demo.2"]
    seeded.patch_namespaced_config_map(
        "cocoon-affinity.default.1", SYSTEM, {"data": {"team-a.demo.2": twin}}
    )
    code, _, err = run(backend, "release", "team-a.demo.2")
    assert (code, err) == (
        1,
        "error: 2 entries match (default/team-a.demo.2 in cocoon-affinity-default, "
        "default/team-a.demo.2 in cocoon-affinity.default.1); pick one with --configmap\n",
    )
    code, _, _ = run(
        backend, "release", "team-a.demo.2", "--configmap", "cocoon-affinity.default.1"
    )
    assert code == 0
    assert "team-a.demo.2" not in data_of(seeded, "cocoon-affinity.default.1")
    assert data_of(seeded, "cocoon-affinity-default")["team-a.demo.2"] == twin


def test_release_is_compare_and_delete(backend: Any, seeded: Any) -> None:
    """The entry is re-claimed between the read and the write: nothing is released."""
    kube = ClientKubeApi(backend.kubeconfig)

    def reclaim() -> None:
        stored = kube.get_configmap(SYSTEM, "cocoon-affinity-default", 10)
        moved = replace(decode(stored.data["team-a.demo.2"]), pod="demo-new99", missing_since=None)
        stored.data["team-a.demo.2"] = encode(moved)
        kube.replace_configmap(stored, 10)

    racing = Interleaved(kube, reclaim)
    code, _, err = run(backend, "release", "team-a.demo.2", kube=racing)
    assert code == 1
    assert err == (
        "error: nothing released: entry team-a.demo.2 changed since it was read; "
        "look again before releasing it\n"
    )
    assert decode(data_of(seeded, "cocoon-affinity-default")["team-a.demo.2"]).pod == "demo-new99"


def test_release_racing_mutate_loses_no_reservation(backend: Any, seeded: Any) -> None:
    code, err, reserved, puts = race_with_mutate(backend, "release", "team-a.demo.2")
    assert code == 0, err
    assert puts >= 2  # the first PUT lost to mutate's write
    data = data_of(seeded, "cocoon-affinity-default")
    assert "team-a.demo.2" not in data
    assert len(reserved) == 13
    assert {d.key: encode(d.reservation) for d in reserved}.items() <= data.items()
    assert {"team-a.demo.0", "team-a.demo.1"} <= set(data)


# --- unpin ---------------------------------------------------------------------------------------

UNPINNED = ("team-a.demo.0", "team-a.demo.2", "team-a._pod.solo", "team-a._pod.other")


def test_unpin_dry_run_shows_and_warns_but_writes_nothing(backend: Any, seeded: Any) -> None:
    before = data_of(seeded, "cocoon-affinity-default")
    code, out, err = run(backend, "unpin", "--node", "cocoon-a", "--dry-run")
    assert code == 0
    assert "the disks of these 4 VMs stay on node cocoon-a" in err
    assert "node cocoon-a is still schedulable in pool default" in err
    assert out.endswith("would unpin 4 entries from node cocoon-a (dry run)\n")
    assert out.count("   cocoon-a   ") == 4  # the table of entries that would change
    assert data_of(seeded, "cocoon-affinity-default") == before


def test_unpin_clears_only_the_node(backend: Any, seeded: Any) -> None:
    before = {
        **data_of(seeded, "cocoon-affinity-default"),
        **data_of(seeded, "cocoon-affinity.default.1"),
    }
    seeded.patch_node("cocoon-a", {"spec": {"unschedulable": True}})
    code, out, err = run(backend, "unpin", "--node", "cocoon-a")
    assert code == 0
    assert "stay on node cocoon-a" in err and "still schedulable" not in err
    assert out.endswith("unpinned 4 entries from node cocoon-a\n")
    after = {
        **data_of(seeded, "cocoon-affinity-default"),
        **data_of(seeded, "cocoon-affinity.default.1"),
    }
    for key in UNPINNED:
        assert decode(after[key]) == replace(decode(before[key]), node="")
    for key in ("team-a.demo.1", "team-a._pod.broken"):
        assert after[key] == before[key]
    # solo's replacement keeps its VM name and is placed anew, on the node that replaced
    # cocoon-a, instead of being held to cocoon-a's disk.
    node(backend, seeded, "cocoon-c")
    replacement = reserve(
        ClientKubeApi(backend.kubeconfig), cocoon_pod(name="solo", namespace="team-a")
    )
    assert (replacement.key, replacement.reservation.vm_name) == (
        "team-a._pod.solo",
        "vk-team-a-solo",
    )
    assert replacement.reservation.node == "cocoon-c"


@pytest.mark.parametrize("backend", ["emulator"], indirect=True)
def test_an_explicit_namespace_scopes_release_and_unpin(backend: Any, seeded: Any) -> None:
    """`-n` was accepted and ignored: `-n team-a unpin --node gpu-1` unpinned another
    namespace's VM. Without -n both still act on every namespace (a retired node concerns all)."""
    gpu = data_of(seeded, "cocoon-affinity-gpu")
    code, out, _ = run(backend, "-n", "team-a", "unpin", "--node", "gpu-1")
    assert (code, out) == (0, "no reservation in namespace team-a is pinned to node gpu-1\n")
    code, _, err = run(backend, "release", "-n", "team-a", "--vm", "vk-default-trainer", "--force")
    assert (code, err) == (
        1, "error: no reservation with VM vk-default-trainer in namespace team-a\n"
    )  # fmt: skip
    assert data_of(seeded, "cocoon-affinity-gpu") == gpu
    seeded.patch_node("gpu-1", {"spec": {"unschedulable": True}})
    code, out, _ = run(backend, "unpin", "-n", "default", "--node", "gpu-1")
    assert code == 0 and out.endswith("unpinned 1 entries from node gpu-1\n")
    assert decode(data_of(seeded, "cocoon-affinity-gpu")["default._pod.trainer"]).node == ""


def test_unpin_racing_mutate_loses_nothing_and_misses_nothing(backend: Any, seeded: Any) -> None:
    # mutate pins the first pod to cocoon-a (the only Ready, schedulable node) between the
    # command's read and its PUT; the command's retry must unpin that one too.
    code, err, reserved, puts = race_with_mutate(backend, "unpin", "--node", "cocoon-a")
    first = reserved[:1]
    assert code == 0, err
    assert puts >= 2
    assert first[0].reservation.node == "cocoon-a"
    data = data_of(seeded, "cocoon-affinity-default")
    for draft in reserved:
        stored = decode(data[draft.key])
        # Present whatever the order; pinned to cocoon-a only if it landed after the unpin.
        assert replace(stored, node=draft.reservation.node) == draft.reservation
    assert decode(data[first[0].key]).node == ""
    data.update(data_of(seeded, "cocoon-affinity.default.1"))
    for key in UNPINNED:
        assert decode(data[key]).node == ""


# --- sweep ---------------------------------------------------------------------------------------


def test_sweep_dry_run_then_sweep(backend: Any, seeded: Any) -> None:
    before = data_of(seeded, "cocoon-affinity-default")
    code, out, _ = run(backend, "sweep", "--dry-run", "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "pools": 2, "checked": 7, "marked": 1, "cleared": 0, "released": 1, "malformed": 1,
        "errors": 0, "retries": 0, "dryRun": True,
    }  # fmt: skip
    assert data_of(seeded, "cocoon-affinity-default") == before
    code, out, _ = run(backend, "sweep")
    assert code == 0
    golden("cli_sweep.txt", out)
    del before["team-a._pod.solo"]  # missing past the grace; the rest wait or live
    assert data_of(seeded, "cocoon-affinity-default") == before


# --- as kubectl runs it ---------------------------------------------------------------------------


def test_kubectl_runs_the_installed_plugin(backend: Any, seeded: Any, tmp_path: Path) -> None:
    """`kubectl cocoon` finds the console script on PATH, which honours KUBECONFIG and a
    --context whose namespace is the default for -n."""
    config = yaml.safe_load(Path(backend.kubeconfig).read_text())
    context = config["contexts"][0]
    config["contexts"].append(
        {"name": "team", "context": {**context["context"], "namespace": "team-a"}}
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def kubectl(*argv: str) -> list[str]:
        done = subprocess.run(
            [str(bin_dir / "kubectl"), "cocoon", *argv],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [item["key"] for item in json.loads(done.stdout)["items"]]

    assert kubectl("res", "-o", "json") == ["default._pod.trainer"]
    assert kubectl("res", "-o", "json", "--context", "team", "--state", "live") == ["team-a.demo.0"]
    assert kubectl("--context", "team", "res", "-o", "json", "-n", "default") == [
        "default._pod.trainer"
    ]

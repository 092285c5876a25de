"""Create, get, list, replace of ConfigMaps: metadata, errors, validation, concurrency.

Upstream: k8s.io/apiserver/pkg/registry/generic/registry (store.go), pkg/apis/core/validation
(ValidateConfigMap), apimachinery's api/errors.
"""

from __future__ import annotations

import re
import threading

import pytest
from kubernetes import client

from tests.conformance.conftest import Cluster
from tests.conformance.helpers import body_of, configmap, raw


def causes(err: client.ApiException) -> list[dict[str, str]]:
    return body_of(err)["details"]["causes"]  # type: ignore[no-any-return]


def test_create_sets_system_metadata(core: client.CoreV1Api, ns: str) -> None:
    """BeforeCreate fills uid and creationTimestamp; the store assigns a numeric resourceVersion."""
    cm = core.create_namespaced_config_map(ns, configmap("a", {"k": "v"}))
    assert cm.metadata.uid
    assert cm.metadata.creation_timestamp is not None
    assert cm.metadata.resource_version.isdigit()
    assert cm.metadata.namespace == ns
    got = core.read_namespaced_config_map("a", ns)
    assert got.metadata.uid == cm.metadata.uid
    assert got.data == {"k": "v"}


def test_create_twice_is_already_exists(core: client.CoreV1Api, ns: str) -> None:
    """A second create of the same name is 409 AlreadyExists (errors.NewAlreadyExists)."""
    core.create_namespaced_config_map(ns, configmap("dup"))
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, configmap("dup"))
    assert exc.value.status == 409
    body = body_of(exc.value)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == 'configmaps "dup" already exists'


def test_get_missing_is_not_found(core: client.CoreV1Api, ns: str) -> None:
    """GET of an absent object is 404 NotFound with `<resource> "<name>" not found`."""
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_config_map("nope", ns)
    assert exc.value.status == 404
    assert body_of(exc.value)["message"] == 'configmaps "nope" not found'


def test_create_in_missing_namespace_is_not_found(core: client.CoreV1Api) -> None:
    """NamespaceLifecycle admission: creating in a namespace that does not exist is 404."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("no-such-ns-9f3", configmap("a"))
    assert exc.value.status == 404
    body = body_of(exc.value)
    assert body["message"] == 'namespaces "no-such-ns-9f3" not found'
    assert body["details"]["kind"] == "namespaces"


def test_generate_name(core: client.CoreV1Api, ns: str) -> None:
    """generateName appends 5 characters of names.SimpleNameGenerator's alphabet."""
    cm = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}, "data": {}})
    assert re.fullmatch(r"gen-[bcdfghjklmnpqrstvwxz2456789]{5}", cm.metadata.name)
    assert cm.metadata.generate_name == "gen-"


def test_dry_run_create_stores_nothing(core: client.CoreV1Api, ns: str) -> None:
    """dryRun=All runs the whole create but does not persist (no resourceVersion)."""
    cm = core.create_namespaced_config_map(ns, configmap("dry", {"a": "1"}), dry_run="All")
    assert cm.metadata.name == "dry"
    assert not cm.metadata.resource_version
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_config_map("dry", ns)
    assert exc.value.status == 404


def test_invalid_name_is_422(core: client.CoreV1Api, ns: str) -> None:
    """Names are DNS-1123 subdomains (ValidateObjectMeta): `Bad_Name` is 422 on metadata.name."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, configmap("Bad_Name"))
    assert exc.value.status == 422
    assert body_of(exc.value)["reason"] == "Invalid"
    assert [c["field"] for c in causes(exc.value)] == ["metadata.name"]


def test_invalid_label_value_is_422(core: client.CoreV1Api, ns: str) -> None:
    """Label values are at most 63 characters of [-A-Za-z0-9_.] (ValidateLabels)."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, configmap("l", labels={"a": "x" * 64}))
    assert exc.value.status == 422
    assert causes(exc.value)[0]["field"] == "metadata.labels"


def test_key_with_slash_is_422(core: client.CoreV1Api, ns: str) -> None:
    """ConfigMap keys must match [-._a-zA-Z0-9]+: data {"a/b": "x"} is 422 on data[a/b]."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, configmap("k", {"a/b": "x"}))
    assert exc.value.status == 422
    body = body_of(exc.value)
    assert body["details"]["kind"] == "ConfigMap"
    (cause,) = body["details"]["causes"]
    assert cause["field"] == "data[a/b]"
    assert cause["reason"] == "FieldValueInvalid"
    assert "a valid config key must consist of alphanumeric characters" in cause["message"]


@pytest.mark.parametrize("key", [".", "..", "..hidden", "k" * 254, "a b", ""])
def test_bad_config_keys_are_422(core: client.CoreV1Api, ns: str, key: str) -> None:
    """IsConfigMapKey: not `.`, not `..`, no `..` prefix, at most 253, no spaces, not empty."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, configmap("k", {key: "x"}))
    assert exc.value.status == 422


@pytest.mark.parametrize("key", ["a.b", "-_.x", "KEY_name-1", ".dotfile", "k" * 253])
def test_good_config_keys(core: client.CoreV1Api, ns: str, key: str) -> None:
    """Dots, dashes, underscores, a single leading dot and 253 characters are fine."""
    cm = core.create_namespaced_config_map(ns, configmap("k", {key: "x"}))
    assert cm.data == {key: "x"}


def test_data_over_one_mebibyte_is_422(core: client.CoreV1Api, ns: str) -> None:
    """Values may not exceed 1 MiB in all (core.MaxSecretSize; keys do not count): `Too long`."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(
            ns, configmap("big", {"k": "x" * (1024 * 1024), "l": "x"})
        )
    assert exc.value.status == 422
    (cause,) = causes(exc.value)
    assert cause == {
        "reason": "FieldValueTooLong",
        "message": "Too long: may not be more than 1048576 bytes",
        "field": "[]",
    }
    just_fits = core.create_namespaced_config_map(
        ns, configmap("fits", {"a-long-key": "x" * (1024 * 1024)})
    )
    assert len(just_fits.data["a-long-key"]) == 1024 * 1024


def test_key_in_data_and_binary_data_is_422(core: client.CoreV1Api, ns: str) -> None:
    """A key may not appear in both data and binaryData."""
    body = configmap("both", {"k": "x"})
    body["binaryData"] = {"k": "eA=="}
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, body)
    assert exc.value.status == 422


def test_stale_put_is_conflict(core: client.CoreV1Api, ns: str) -> None:
    """A PUT carrying an old resourceVersion is 409 Conflict (optimistic concurrency)."""
    cm = core.create_namespaced_config_map(ns, configmap("c", {"n": "0"}))
    stale = cm.metadata.resource_version
    cm.data["n"] = "1"
    fresh = core.replace_namespaced_config_map("c", ns, cm)
    assert int(fresh.metadata.resource_version) > int(stale)
    cm.metadata.resource_version = stale
    cm.data["n"] = "2"
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("c", ns, cm)
    assert exc.value.status == 409
    body = body_of(exc.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert core.read_namespaced_config_map("c", ns).data == {"n": "1"}


def test_put_without_resource_version_is_unconditional(core: client.CoreV1Api, ns: str) -> None:
    """ConfigMaps allow unconditional update: a PUT without resourceVersion overwrites."""
    core.create_namespaced_config_map(ns, configmap("u", {"n": "0"}))
    out = core.replace_namespaced_config_map("u", ns, configmap("u", {"n": "9"}))
    assert out.data == {"n": "9"}


def test_noop_put_keeps_resource_version(core: client.CoreV1Api, ns: str) -> None:
    """GuaranteedUpdate skips writes that change nothing: the resourceVersion stays."""
    cm = core.create_namespaced_config_map(ns, configmap("same", {"n": "0"}))
    again = core.replace_namespaced_config_map("same", ns, cm)
    assert again.metadata.resource_version == cm.metadata.resource_version


def test_put_name_mismatch_is_bad_request(core: client.CoreV1Api, ns: str) -> None:
    """The body's name must equal the URL's: 400 BadRequest otherwise."""
    core.create_namespaced_config_map(ns, configmap("one"))
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("one", ns, configmap("two"))
    assert exc.value.status == 400
    assert body_of(exc.value)["reason"] == "BadRequest"


def test_put_missing_is_not_found(core: client.CoreV1Api, ns: str) -> None:
    """ConfigMaps do not allow create-on-update: PUT of an absent object is 404."""
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("ghost", ns, configmap("ghost"))
    assert exc.value.status == 404


def test_namespace_mismatch_is_bad_request(core: client.CoreV1Api, ns: str) -> None:
    """An object naming another namespace than the URL's is 400 BadRequest."""
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, configmap("x", namespace="elsewhere"))
    assert exc.value.status == 400


def test_resource_versions_increase_and_list_rv_covers_items(
    core: client.CoreV1Api, ns: str
) -> None:
    """resourceVersions grow with every write; a list's resourceVersion is at least its items'."""
    a = core.create_namespaced_config_map(ns, configmap("a"))
    b = core.create_namespaced_config_map(ns, configmap("b"))
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    listed = core.list_namespaced_config_map(ns)
    assert int(listed.metadata.resource_version) >= int(b.metadata.resource_version)


def test_list_limit_and_continue(core: client.CoreV1Api, ns: str) -> None:
    """Chunked lists: limit gives a page and a continue token; remainingItemCount the rest."""
    for i in range(5):
        core.create_namespaced_config_map(ns, configmap(f"p{i}"))
    total = len(core.list_namespaced_config_map(ns).items)  # a cluster adds kube-root-ca.crt
    first = core.list_namespaced_config_map(ns, limit=2)
    names = [c.metadata.name for c in first.items]
    assert len(names) == 2
    assert first.metadata._continue
    assert first.metadata.remaining_item_count == total - 2
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(ns, limit=2, _continue=token)
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert len(names) == total
    assert sorted(n for n in names if n.startswith("p")) == [f"p{i}" for i in range(5)]


def test_bad_continue_token_is_bad_request(core: client.CoreV1Api, ns: str) -> None:
    """A continue token that does not decode is 400 BadRequest."""
    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_config_map(ns, limit=1, _continue="not-a-token")
    assert exc.value.status == 400


def test_concurrent_read_modify_write_loses_no_update(
    cluster: Cluster, core: client.CoreV1Api, ns: str
) -> None:
    """4 threads × 25 increments through GET + PUT with retry on 409 end at exactly 100."""
    core.create_namespaced_config_map(ns, configmap("counter", {"n": "0"}))
    conflicts = []

    def worker() -> None:
        v1 = client.CoreV1Api(cluster.api_client())
        for _ in range(25):
            while True:
                cm = v1.read_namespaced_config_map("counter", ns)
                cm.data["n"] = str(int(cm.data["n"]) + 1)
                try:
                    v1.replace_namespaced_config_map("counter", ns, cm)
                    break
                except client.ApiException as err:
                    if err.status != 409:
                        raise
                    conflicts.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert core.read_namespaced_config_map("counter", ns).data == {"n": "100"}


def test_cluster_wide_list_spans_namespaces(
    core: client.CoreV1Api, ns: str, api: client.ApiClient
) -> None:
    """GET /api/v1/configmaps lists across namespaces."""
    core.create_namespaced_config_map(ns, configmap("wide"))
    items = raw(api, "GET", "/api/v1/configmaps").json()["items"]
    assert any(i["metadata"]["namespace"] == ns and i["metadata"]["name"] == "wide" for i in items)

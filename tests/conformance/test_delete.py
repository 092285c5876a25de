"""DELETE: preconditions, finalizers, dry run, namespace lifecycle.

Upstream: registry/generic/registry/store.go (Delete, updateForGracefulDeletionAndFinalizers),
rest.BeforeDelete, the NamespaceLifecycle admission plugin and the namespace controller.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.conformance.helpers import body_of, configmap, unique, wait_for


def _gone(read: object) -> bool:
    try:
        read()  # type: ignore[operator]
    except client.ApiException as err:
        return err.status == 404
    return False


def test_delete_answers_status_success(core: client.CoreV1Api, ns: str) -> None:
    """Deleting a ConfigMap returns Status Success whose details name the resource and uid."""
    cm = core.create_namespaced_config_map(ns, configmap("d"))
    out = core.delete_namespaced_config_map("d", ns)
    # the client hands a Status back as a plain dict
    status = out if isinstance(out, dict) else client.ApiClient().sanitize_for_serialization(out)
    assert status["status"] == "Success"
    assert status["details"]["name"] == "d"
    assert status["details"]["kind"] == "configmaps"
    assert status["details"]["uid"] == cm.metadata.uid
    assert _gone(lambda: core.read_namespaced_config_map("d", ns))


def test_delete_missing_is_404(core: client.CoreV1Api, ns: str) -> None:
    """DELETE of an absent object is 404 NotFound."""
    with pytest.raises(client.ApiException) as exc:
        core.delete_namespaced_config_map("nothing", ns)
    assert exc.value.status == 404


def test_uid_precondition(core: client.CoreV1Api, ns: str) -> None:
    """preconditions.uid that does not match is 409 Conflict; the object stays."""
    core.create_namespaced_config_map(ns, configmap("p"))
    opts = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000")
    )
    with pytest.raises(client.ApiException) as exc:
        core.delete_namespaced_config_map("p", ns, body=opts)
    assert exc.value.status == 409
    uid = core.read_namespaced_config_map("p", ns).metadata.uid
    body = body_of(exc.value)
    assert body["message"] == (
        'Operation cannot be fulfilled on ConfigMap "p": the UID in the precondition '
        f"(00000000-0000-0000-0000-000000000000) does not match the UID in record ({uid}). "
        "The object might have been deleted and then recreated"
    )
    assert body["details"] == {"name": "p", "kind": "ConfigMap"}


def test_resource_version_precondition(core: client.CoreV1Api, ns: str) -> None:
    """preconditions.resourceVersion must equal the current one; a matching one deletes."""
    cm = core.create_namespaced_config_map(ns, configmap("r", {"a": "1"}))
    core.patch_namespaced_config_map("r", ns, {"data": {"a": "2"}})
    stale = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=cm.metadata.resource_version)
    )
    with pytest.raises(client.ApiException) as exc:
        core.delete_namespaced_config_map("r", ns, body=stale)
    assert exc.value.status == 409
    current = core.read_namespaced_config_map("r", ns).metadata.resource_version
    assert body_of(exc.value)["message"].endswith(
        f"the ResourceVersion in the precondition ({cm.metadata.resource_version}) does not "
        f"match the ResourceVersion in record ({current}). The object might have been modified"
    )
    ok = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=current))
    core.delete_namespaced_config_map("r", ns, body=ok)
    assert _gone(lambda: core.read_namespaced_config_map("r", ns))


def test_finalizers_hold_the_object_until_removed(core: client.CoreV1Api, ns: str) -> None:
    """With finalizers, DELETE only sets deletionTimestamp; removing the last one deletes."""
    core.create_namespaced_config_map(ns, configmap("fin", finalizers=["example.com/hold"]))
    core.delete_namespaced_config_map("fin", ns)
    held = core.read_namespaced_config_map("fin", ns)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["example.com/hold"]
    held.metadata.finalizers = []
    core.replace_namespaced_config_map("fin", ns, held)
    assert _gone(lambda: core.read_namespaced_config_map("fin", ns))


def test_no_new_finalizers_while_deleting(core: client.CoreV1Api, ns: str) -> None:
    """ValidateObjectMetaUpdate: no finalizer may be added once deletionTimestamp is set."""
    core.create_namespaced_config_map(ns, configmap("nf", finalizers=["example.com/a"]))
    core.delete_namespaced_config_map("nf", ns)
    cm = core.read_namespaced_config_map("nf", ns)
    cm.metadata.finalizers = ["example.com/a", "example.com/b"]
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("nf", ns, cm)
    assert exc.value.status == 422
    core.patch_namespaced_config_map("nf", ns, {"metadata": {"finalizers": None}})


def test_dry_run_delete_keeps_the_object(core: client.CoreV1Api, ns: str) -> None:
    """dryRun=All on DELETE answers as if deleted but keeps the object."""
    core.create_namespaced_config_map(ns, configmap("keep"))
    core.delete_namespaced_config_map("keep", ns, dry_run="All")
    core.read_namespaced_config_map("keep", ns)


def test_namespace_deletion_cascades(core: client.CoreV1Api) -> None:
    """Deleting a namespace marks it Terminating and removes its content, then itself."""
    name = unique("casc")
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, configmap("inside"))
    core.delete_namespace(name)
    wait_for(lambda: _gone(lambda: core.read_namespace(name)), "namespace removal")
    assert _gone(lambda: core.read_namespaced_config_map("inside", name))


def test_terminating_namespace_refuses_new_content(core: client.CoreV1Api) -> None:
    """NamespaceLifecycle: creating in a Terminating namespace is 403 Forbidden."""
    name = unique("term")
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, configmap("holder", finalizers=["example.com/hold"]))
    core.delete_namespace(name)
    assert wait_for(lambda: core.read_namespace(name).status.phase == "Terminating", "Terminating")
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(name, configmap("late"))
    assert exc.value.status == 403
    body = body_of(exc.value)
    assert body["reason"] == "Forbidden"
    assert "because it is being terminated" in body["message"]
    wait_for(
        lambda: (
            core.read_namespaced_config_map("holder", name).metadata.deletion_timestamp is not None
        ),
        "content marked for deletion",
    )
    core.patch_namespaced_config_map("holder", name, {"metadata": {"finalizers": None}})
    wait_for(lambda: _gone(lambda: core.read_namespace(name)), "namespace removal")


def test_namespace_carries_its_name_label(core: client.CoreV1Api, ns: str) -> None:
    """The API server sets kubernetes.io/metadata.name=<name> on every namespace (1.21+)."""
    got = core.read_namespace(ns)
    assert got.metadata.labels["kubernetes.io/metadata.name"] == ns
    assert got.status.phase == "Active"


def test_delete_collection_by_label(core: client.CoreV1Api, ns: str) -> None:
    """deletecollection with a label selector deletes exactly the matching objects."""
    core.create_namespaced_config_map(ns, configmap("x1", labels={"sweep": "yes"}))
    core.create_namespaced_config_map(ns, configmap("x2", labels={"sweep": "yes"}))
    core.create_namespaced_config_map(ns, configmap("x3", labels={"sweep": "no"}))
    core.delete_collection_namespaced_config_map(ns, label_selector="sweep=yes")

    def names() -> set[str]:
        return {
            c.metadata.name
            for c in core.list_namespaced_config_map(ns, label_selector="sweep").items
        }

    wait_for(lambda: names() == {"x3"}, "collection deletion")

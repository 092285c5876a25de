"""Label selectors: the whole grammar of k8s.io/apimachinery/pkg/labels (selector.go)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.conformance.helpers import configmap

# name → labels of the fixture objects
OBJECTS = {
    "a": {"app": "web", "tier": "1"},
    "b": {"app": "web", "tier": "2", "canary": "true"},
    "c": {"app": "db", "tier": "3"},
    "d": {"app": "cache"},
    "e": {},
    "f": {"app": ""},
}


@pytest.fixture
def labelled(core: client.CoreV1Api, ns: str) -> str:
    for name, labels in OBJECTS.items():
        core.create_namespaced_config_map(ns, configmap(name, labels=labels))
    return ns


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("app=web", "ab", id="equals"),
        pytest.param("app==web", "ab", id="double-equals"),
        pytest.param("app!=web", "cdef", id="not-equals-includes-unlabelled"),
        pytest.param("app in (web,db)", "abc", id="in"),
        pytest.param("app notin (web,db)", "def", id="notin-includes-unlabelled"),
        pytest.param("canary", "b", id="exists"),
        pytest.param("!canary", "acdef", id="does-not-exist"),
        pytest.param("app=web,!canary", "a", id="and"),
        pytest.param("tier>1", "bc", id="greater-than"),
        pytest.param("tier<3", "ab", id="less-than"),
        pytest.param("app in (web), tier notin (2)", "a", id="spaces"),
        pytest.param("app in ()", "f", id="in-nothing-is-the-empty-value"),
        pytest.param("app notin ()", "abcde", id="notin-nothing"),
        pytest.param("", "abcdef", id="empty-matches-all"),
        pytest.param("app=nothing", "", id="no-match"),
    ],
)
def test_label_selector_filters_exactly(
    core: client.CoreV1Api, labelled: str, selector: str, expected: str
) -> None:
    """Each requirement form selects exactly the objects the upstream matcher does."""
    items = core.list_namespaced_config_map(labelled, label_selector=selector).items
    got = sorted(c.metadata.name for c in items if c.metadata.name in OBJECTS)
    assert "".join(got) == expected


@pytest.mark.parametrize(
    "selector", ["app=(web", "app in web", "app in (", "tier>x", "a b", "=web", "app=web,"]
)
def test_bad_label_selector_is_400(core: client.CoreV1Api, ns: str, selector: str) -> None:
    """A selector that does not parse is 400 BadRequest."""
    with pytest.raises(client.ApiException) as exc:
        core.list_namespaced_config_map(ns, label_selector=selector)
    assert exc.value.status == 400

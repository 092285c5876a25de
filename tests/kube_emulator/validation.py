"""Validation and defaulting of the built-in kinds, after k8s.io/kubernetes/pkg/apis/*/validation.

Messages follow the API server's field errors (`<path>: Invalid value: "x": <why>`), because
clients and people read them. The rules are the subset our workloads exercise: object metadata
(names, generateName, labels, annotations, finalizers), ConfigMap keys and size, Pod containers,
restart and DNS policies and tolerations, workload selectors and templates, webhook configurations
and CRDs. Defaults are the scheme defaults of the same kinds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.kube_emulator.errors import Cause

Obj = dict[str, Any]

# -- value rendering (Go's %q / %v, close enough for messages) ---------------------------------


def go_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(x)}" for k, x in sorted(v.items()))
        return "map[string]string{" + inner + "}"
    return json.dumps(v, sort_keys=True)


def required(path: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", path, "Required value" + (f": {detail}" if detail else ""))


def invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {detail}")


def forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", path, f"Forbidden: {detail}")


def duplicate(path: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", path, f"Duplicate value: {go_value(value)}")


def too_long(path: str, limit: int, unit: str = "bytes") -> Cause:
    return Cause("FieldValueTooLong", path, f"Too long: may not be more than {limit} {unit}")


def too_many(path: str, count: int, limit: int) -> Cause:
    return Cause("FieldValueTooMany", path, f"Too many: {count}: must have at most {limit} items")


def not_supported(path: str, value: Any, supported: list[str]) -> Cause:
    options = ", ".join(json.dumps(s) for s in supported)
    return Cause(
        "FieldValueNotSupported",
        path,
        f"Unsupported value: {go_value(value)}: supported values: {options}",
    )


def type_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueTypeInvalid", path, f"Invalid value: {go_value(value)}: {detail}")


# -- names ------------------------------------------------------------------------------------

DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = DNS1123_LABEL + r"(\." + DNS1123_LABEL + ")*"
_LABEL_RE = re.compile(f"^{DNS1123_LABEL}$")
_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN}$")
QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_RE = re.compile(f"^{QUALIFIED_NAME}$")
LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE}$")
CONFIG_KEY = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(f"^{CONFIG_KEY}$")


def _length_and_pattern(
    value: str, limit: int, pattern: re.Pattern[str], message: str
) -> list[str]:
    """The shape of most apimachinery validators: a length message, then a format message."""
    errs = []
    if len(value) > limit:
        errs.append(f"must be no more than {limit} characters")
    if not pattern.match(value):
        errs.append(message)
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    return _length_and_pattern(
        value,
        63,
        _LABEL_RE,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
        f"regex used for validation is '{DNS1123_LABEL}')",
    )


def dns1123_subdomain_errors(value: str) -> list[str]:
    return _length_and_pattern(
        value,
        253,
        _SUBDOMAIN_RE,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'example.com', "
        f"regex used for validation is '{DNS1123_SUBDOMAIN}')",
    )


def qualified_name_errors(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS-subdomain prefix, '/', and a name of ≤ 63."""
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            f"'123-abc', regex used for validation is '{QUALIFIED_NAME}') with an optional DNS "
            "subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_RE.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
            f"regex used for validation is '{QUALIFIED_NAME}')"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    return _length_and_pattern(
        value,
        63,
        _LABEL_VALUE_RE,
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
        "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
        f"'my_value',  or '12345', regex used for validation is '{LABEL_VALUE}')",
    )


def config_key_errors(key: str) -> list[str]:
    errs = _length_and_pattern(
        key,
        253,
        _CONFIG_KEY_RE,
        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
        "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        f"'{CONFIG_KEY}')",
    )
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


NameCheck = Callable[[str], list[str]]

MAX_ANNOTATIONS_BYTES = 256 * 1024
MAX_CONFIGMAP_BYTES = 1024 * 1024  # core.MaxSecretSize: ConfigMaps share the Secret limit
GENERATED_SUFFIX = 5
MAX_GENERATED_PREFIX = 63 - GENERATED_SUFFIX


def validate_labels(labels: Any, path: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [type_invalid(path, labels, "must be a map of strings")]
    out = []
    for k, v in labels.items():
        for e in qualified_name_errors(k):
            out.append(invalid(path, k, e))
        if not isinstance(v, str):
            out.append(type_invalid(path, v, "must be a string"))
            continue
        for e in label_value_errors(v):
            out.append(invalid(path, v, e))
    return out


def validate_annotations(annotations: Any, path: str) -> list[Cause]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        return [type_invalid(path, annotations, "must be a map of strings")]
    out = []
    total = 0
    for k, v in annotations.items():
        for e in qualified_name_errors(k.lower()):
            out.append(invalid(path, k, e))
        total += len(k) + len(str(v))
    if total > MAX_ANNOTATIONS_BYTES:
        out.append(too_long(path, MAX_ANNOTATIONS_BYTES))
    return out


def validate_object_meta(
    meta: Any, *, namespaced: bool, name_check: NameCheck, require_name: bool = True
) -> list[Cause]:
    """ValidateObjectMeta: name or generateName, namespace presence, labels, annotations."""
    if not isinstance(meta, dict):
        return [required("metadata")]
    out: list[Cause] = []
    name = meta.get("name") or ""
    generate = meta.get("generateName") or ""
    if generate:
        for e in name_check(generate.rstrip("-") or "a"):
            out.append(invalid("metadata.generateName", generate, e))
    if not name:
        if require_name:
            out.append(required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        out.append(type_invalid("metadata.name", name, "must be a string"))
    else:
        for e in name_check(name):
            out.append(invalid("metadata.name", name, e))
    namespace = meta.get("namespace") or ""
    if namespaced:
        if not namespace:
            out.append(required("metadata.namespace"))
        else:
            for e in dns1123_label_errors(namespace):
                out.append(invalid("metadata.namespace", namespace, e))
    elif namespace:
        out.append(forbidden("metadata.namespace", "not allowed on this type"))
    out += validate_labels(meta.get("labels"), "metadata.labels")
    out += validate_annotations(meta.get("annotations"), "metadata.annotations")
    finalizers = meta.get("finalizers") or []
    for i, f in enumerate(finalizers):
        if not isinstance(f, str):
            out.append(type_invalid(f"metadata.finalizers[{i}]", f, "must be a string"))
            continue
        for e in qualified_name_errors(f):
            out.append(invalid("metadata.finalizers", f, e))
        if "/" not in f and f not in STANDARD_FINALIZERS:
            out.append(
                invalid(
                    "metadata.finalizers",
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return out


STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def validate_meta_update(new: Obj, old: Obj) -> list[Cause]:
    """ValidateObjectMetaUpdate: the finalizers of an object being deleted may only shrink."""
    out = []
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    if old_meta.get("deletionTimestamp"):
        old_f = set(old_meta.get("finalizers") or [])
        added = [f for f in new_meta.get("finalizers") or [] if f not in old_f]
        if added:
            out.append(
                forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted, "
                    "found new finalizers " + go_value(added),
                )
            )
    return out


# -- ConfigMap --------------------------------------------------------------------------------


def validate_configmap(obj: Obj, old: Obj | None) -> list[Cause]:
    out = []
    total = 0
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    if not isinstance(data, dict):
        return [type_invalid("data", data, "must be a map of strings")]
    if not isinstance(binary, dict):
        return [type_invalid("binaryData", binary, "must be a map of base64 strings")]
    for key, value in data.items():
        for e in config_key_errors(key):
            out.append(invalid(f"data[{key}]", key, e))
        if not isinstance(value, str):
            out.append(type_invalid(f"data[{key}]", value, "must be a string"))
            continue
        total += len(value.encode())
    for key, value in binary.items():
        for e in config_key_errors(key):
            out.append(invalid(f"binaryData[{key}]", key, e))
        if key in data:
            out.append(invalid(f"binaryData[{key}]", key, "duplicate of key present in data"))
        # binaryData travels base64-encoded; the limit counts decoded bytes (values only)
        total += (len(str(value)) * 3) // 4
    if total > MAX_CONFIGMAP_BYTES:
        out.append(too_long("[]", MAX_CONFIGMAP_BYTES))  # field.NewPath("") prints as []
    if old is not None and (old.get("immutable") or False):
        if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
            out.append(forbidden("data", "field is immutable when `immutable` is set"))
        if not obj.get("immutable"):
            out.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return out


# -- Pods -------------------------------------------------------------------------------------

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
TAINT_EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _containers(spec: Obj, field: str, path: str, names: set[str]) -> list[Cause]:
    out: list[Cause] = []
    items = spec.get(field) or []
    if not isinstance(items, list):
        return [type_invalid(f"{path}.{field}", items, "must be a list")]
    for i, c in enumerate(items):
        p = f"{path}.{field}[{i}]"
        if not isinstance(c, dict):
            out.append(type_invalid(p, c, "must be an object"))
            continue
        name = c.get("name") or ""
        if not name:
            out.append(required(p + ".name"))
        else:
            out += [invalid(p + ".name", name, e) for e in dns1123_label_errors(name)]
            if name in names:
                out.append(duplicate(p + ".name", name))
            names.add(name)
        if not c.get("image"):
            out.append(required(p + ".image"))
        policy = c.get("imagePullPolicy")
        if policy is not None and policy not in PULL_POLICIES:
            out.append(not_supported(p + ".imagePullPolicy", policy, PULL_POLICIES))
        for j, port in enumerate(c.get("ports") or []):
            pp = f"{p}.ports[{j}]"
            cp = port.get("containerPort")
            if not isinstance(cp, int) or not 1 <= cp <= 65535:
                out.append(
                    invalid(pp + ".containerPort", cp, "must be between 1 and 65535, inclusive")
                )
            proto = port.get("protocol", "TCP")
            if proto not in PROTOCOLS:
                out.append(not_supported(pp + ".protocol", proto, PROTOCOLS))
        for j, env in enumerate(c.get("env") or []):
            if not (env or {}).get("name"):
                out.append(required(f"{p}.env[{j}].name"))
    return out


def validate_tolerations(tolerations: Any, path: str) -> list[Cause]:
    out: list[Cause] = []
    for i, t in enumerate(tolerations or []):
        p = f"{path}[{i}]"
        key = t.get("key") or ""
        op = t.get("operator") or "Equal"
        if key:
            out += [invalid(p + ".key", key, e) for e in qualified_name_errors(key)]
        elif op != "Exists":
            out.append(
                invalid(
                    p + ".operator",
                    op,
                    "operator must be Exists when `key` is empty, which means "
                    '"match all values and all keys"',
                )
            )
        if op not in ("Equal", "Exists"):
            out.append(not_supported(p + ".operator", op, ["Equal", "Exists"]))
        if op == "Exists" and t.get("value"):
            out.append(
                invalid(
                    p + ".operator",
                    t.get("value"),
                    "value must be empty when `operator` is 'Exists'",
                )
            )
        effect = t.get("effect") or ""
        if effect and effect not in TAINT_EFFECTS:
            out.append(not_supported(p + ".effect", effect, TAINT_EFFECTS))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            out.append(
                invalid(
                    p + ".effect",
                    effect,
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
    return out


def validate_pod_spec(spec: Any, path: str, *, template: bool = False) -> list[Cause]:
    if not isinstance(spec, dict):
        return [required(path)]
    out: list[Cause] = []
    if not spec.get("containers"):
        out.append(required(path + ".containers"))
    names: set[str] = set()
    out += _containers(spec, "containers", path, names)
    out += _containers(spec, "initContainers", path, names)
    rp = spec.get("restartPolicy")
    if rp not in RESTART_POLICIES:
        out.append(not_supported(path + ".restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if dp not in DNS_POLICIES:
        out.append(not_supported(path + ".dnsPolicy", dp, DNS_POLICIES))
    out += validate_labels(spec.get("nodeSelector"), path + ".nodeSelector")
    out += validate_tolerations(spec.get("tolerations"), path + ".tolerations")
    node = spec.get("nodeName")
    if node:
        out += [invalid(path + ".nodeName", node, e) for e in dns1123_subdomain_errors(node)]
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        out.append(
            invalid(
                path + ".terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return out


# Fields a pod update may change (ValidatePodUpdate); everything else in spec is immutable.
POD_UPDATE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _mask_pod_spec(spec: Obj) -> Obj:
    masked: Obj = json.loads(json.dumps(spec))
    for field in ("containers", "initContainers"):
        for c in masked.get(field) or []:
            c.pop("image", None)
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        masked.pop(field, None)
    return masked


def validate_pod(obj: Obj, old: Obj | None) -> list[Cause]:
    out = validate_pod_spec(obj.get("spec"), "spec")
    if old is not None:
        new_spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        if _mask_pod_spec(new_spec) != _mask_pod_spec(old_spec):
            out.append(forbidden("spec", POD_UPDATE_MESSAGE))
        old_tol = old_spec.get("tolerations") or []
        new_tol = new_spec.get("tolerations") or []
        if any(t not in new_tol for t in old_tol):
            out.append(
                forbidden(
                    "spec.tolerations",
                    "existing toleration can not be modified except its tolerationSeconds",
                )
            )
    return out


def default_container(c: Obj) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        image = str(c.get("image") or "")
        tail = image.rsplit("/", 1)[-1]
        # no tag, or :latest, means Always (a digest pins the image)
        latest = "@" not in tail and (":" not in tail or tail.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for field in ("containers", "initContainers"):
        for c in spec.get(field) or []:
            if isinstance(c, dict):
                default_container(c)
    for t in spec.get("tolerations") or []:
        if isinstance(t, dict) and t.get("key") and "operator" not in t:
            t["operator"] = "Equal"


def default_pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        default_pod_spec(spec)
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")


def default_template(spec: Obj) -> None:
    template = spec.setdefault("template", {})
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        pod_spec = template.setdefault("spec", {})
        if isinstance(pod_spec, dict):
            default_pod_spec(pod_spec)


# -- workloads --------------------------------------------------------------------------------


def validate_label_selector(sel: Any, path: str) -> list[Cause]:
    if not isinstance(sel, dict):
        return [type_invalid(path, sel, "must be an object")]
    out = validate_labels(sel.get("matchLabels"), path + ".matchLabels")
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = expr.get("values") or []
        key = expr.get("key") or ""
        out += [invalid(p + ".key", key, e) for e in qualified_name_errors(key)]
        if op in ("In", "NotIn"):
            if not values:
                out.append(
                    required(p + ".values", "must be specified when `operator` is 'In' or 'NotIn'")
                )
        elif op in ("Exists", "DoesNotExist"):
            if values:
                out.append(
                    forbidden(
                        p + ".values",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            out.append(invalid(p + ".operator", op, "not a valid selector operator"))
    return out


def _selector_matches(sel: Obj, labels: dict[str, str]) -> bool:
    from tests.kube_emulator.selectors import SelectorError, selector_from_label_selector

    try:
        return selector_from_label_selector(sel).matches(labels)
    except SelectorError:
        return False


def _validate_workload(obj: Obj, old: Obj | None, kind: str) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    out: list[Cause] = []
    replicas = spec.get("replicas")
    if replicas is not None and (
        not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0
    ):
        out.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    sel = spec.get("selector")
    if sel is None:
        out.append(required("spec.selector"))
    else:
        out += validate_label_selector(sel, "spec.selector")
        if isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions"):
            out.append(invalid("spec.selector", sel, f"empty selector is invalid for {kind}"))
    template = spec.get("template")
    if not isinstance(template, dict):
        out.append(required("spec.template"))
        return out
    labels = (template.get("metadata") or {}).get("labels") or {}
    out += validate_labels(labels, "spec.template.metadata.labels")
    has_selector = isinstance(sel, dict) and (sel.get("matchLabels") or sel.get("matchExpressions"))
    if has_selector and isinstance(sel, dict) and not _selector_matches(sel, labels):
        out.append(
            invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    out += validate_pod_spec(template.get("spec"), "spec.template.spec", template=True)
    pod_spec = template.get("spec") or {}
    if isinstance(pod_spec, dict) and pod_spec.get("restartPolicy") not in (None, "Always"):
        out.append(
            not_supported(
                "spec.template.spec.restartPolicy", pod_spec.get("restartPolicy"), ["Always"]
            )
        )
    if old is not None and (old.get("spec") or {}).get("selector") != sel:
        out.append(invalid("spec.selector", sel, "field is immutable"))
    return out


def validate_deployment(obj: Obj, old: Obj | None) -> list[Cause]:
    out = _validate_workload(obj, old, "deployment")
    strategy = (obj.get("spec") or {}).get("strategy") or {}
    stype = strategy.get("type")
    if stype not in (None, "RollingUpdate", "Recreate"):
        out.append(not_supported("spec.strategy.type", stype, ["Recreate", "RollingUpdate"]))
    if stype == "Recreate" and strategy.get("rollingUpdate"):
        out.append(
            forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        )
    return out


# ValidateStatefulSetUpdate (v1.37): these spec fields are immutable one by one; everything
# else may change (older releases forbade all but a list of fields in one message).
STS_IMMUTABLE = ("volumeClaimTemplates", "serviceName", "podManagementPolicy")


def validate_statefulset(obj: Obj, old: Obj | None) -> list[Cause]:
    out = _validate_workload(obj, old, "statefulset")
    spec = obj.get("spec") or {}
    policy = spec.get("podManagementPolicy")
    if policy not in (None, "OrderedReady", "Parallel"):
        out.append(not_supported("spec.podManagementPolicy", policy, ["OrderedReady", "Parallel"]))
    if old is not None:
        old_spec = old.get("spec") or {}
        for field in STS_IMMUTABLE:
            if spec.get(field) != old_spec.get(field):
                out.append(invalid(f"spec.{field}", spec.get(field), "field is immutable"))
    return out


def validate_replicaset(obj: Obj, old: Obj | None) -> list[Cause]:
    return _validate_workload(obj, old, "replicaset")


def default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_template(spec)
    obj.setdefault("status", {})


def default_statefulset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.setdefault("updateStrategy", {})
    if isinstance(strategy, dict):
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault(
        "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
    )
    default_template(spec)
    obj.setdefault("status", {"replicas": 0, "availableReplicas": 0})


def default_replicaset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    default_template(spec)
    obj.setdefault("status", {"replicas": 0})


# -- namespaces, nodes ------------------------------------------------------------------------


def default_namespace(obj: Obj) -> None:
    meta = obj.setdefault("metadata", {})
    name = meta.get("name")
    if name:
        # the API server always sets this label (NamespaceDefaultLabelName, 1.21+)
        meta.setdefault("labels", {})
        meta["labels"]["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec.setdefault("finalizers", ["kubernetes"])
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Active")


def validate_node(obj: Obj, old: Obj | None) -> list[Cause]:
    out: list[Cause] = []
    for i, t in enumerate((obj.get("spec") or {}).get("taints") or []):
        p = f"spec.taints[{i}]"
        key = t.get("key") or ""
        if not key:
            out.append(required(p + ".key"))
        else:
            out += [invalid(p + ".key", key, e) for e in qualified_name_errors(key)]
        if t.get("effect") not in TAINT_EFFECTS:
            out.append(not_supported(p + ".effect", t.get("effect"), TAINT_EFFECTS))
    return out


# -- admissionregistration --------------------------------------------------------------------

OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
# v1 accepts only None/NoneOnDryRun on create. We also store Some/Unknown (lenient on purpose) so
# that the admission chain's "sideEffects Some/Unknown → 400 on dry runs" rule stays testable.
SIDE_EFFECTS = ["None", "NoneOnDryRun", "Some", "Unknown"]


def default_webhook_configuration(obj: Obj, mutating: bool) -> None:
    for hook in obj.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)


def validate_webhook_configuration(obj: Obj, old: Obj | None, mutating: bool) -> list[Cause]:
    out: list[Cause] = []
    seen: set[str] = set()
    for i, hook in enumerate(obj.get("webhooks") or []):
        p = f"webhooks[{i}]"
        name = hook.get("name") or ""
        if not name:
            out.append(required(p + ".name"))
        else:
            out += [invalid(p + ".name", name, e) for e in dns1123_subdomain_errors(name)]
            if name.count(".") < 2:
                out.append(
                    invalid(
                        p + ".name",
                        name,
                        "should be a domain with at least three segments separated by dots",
                    )
                )
            if name in seen:
                out.append(duplicate(p + ".name", name))
            seen.add(name)
        cc = hook.get("clientConfig") or {}
        url, service = cc.get("url"), cc.get("service")
        if bool(url) == bool(service):
            out.append(required(p + ".clientConfig", "exactly one of url or service is required"))
        if url and not str(url).startswith("https://"):
            out.append(
                invalid(p + ".clientConfig.url", url, "'https' is the only allowed URL scheme")
            )
        if service:
            if not service.get("name"):
                out.append(required(p + ".clientConfig.service.name"))
            if not service.get("namespace"):
                out.append(required(p + ".clientConfig.service.namespace"))
            path = service.get("path")
            if path is not None and not str(path).startswith("/"):
                out.append(invalid(p + ".clientConfig.service.path", path, "must start with a '/'"))
        se = hook.get("sideEffects")
        if se is None:
            out.append(required(p + ".sideEffects", "must specify one of None, NoneOnDryRun"))
        elif se not in SIDE_EFFECTS:
            out.append(not_supported(p + ".sideEffects", se, ["None", "NoneOnDryRun"]))
        versions = hook.get("admissionReviewVersions") or []
        if not versions:
            out.append(required(p + ".admissionReviewVersions", "must specify one of v1, v1beta1"))
        elif not {"v1", "v1beta1"} & set(versions):
            out.append(
                invalid(
                    p + ".admissionReviewVersions",
                    versions,
                    "must include at least one of v1, v1beta1",
                )
            )
        fp = hook.get("failurePolicy")
        if fp not in ("Ignore", "Fail"):
            out.append(not_supported(p + ".failurePolicy", fp, ["Fail", "Ignore"]))
        mp = hook.get("matchPolicy")
        if mp not in ("Exact", "Equivalent"):
            out.append(not_supported(p + ".matchPolicy", mp, ["Equivalent", "Exact"]))
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or not 1 <= timeout <= 30:
            out.append(
                invalid(
                    p + ".timeoutSeconds",
                    timeout,
                    "the timeout value must be between 1 and 30 seconds",
                )
            )
        if mutating and hook.get("reinvocationPolicy") not in ("Never", "IfNeeded"):
            out.append(
                not_supported(
                    p + ".reinvocationPolicy", hook.get("reinvocationPolicy"), ["IfNeeded", "Never"]
                )
            )
        for j, rule in enumerate(hook.get("rules") or []):
            rp = f"{p}.rules[{j}]"
            for field in ("operations", "apiGroups", "apiVersions", "resources"):
                if not rule.get(field):
                    out.append(required(f"{rp}.{field}"))
            for op in rule.get("operations") or []:
                if op not in OPERATIONS:
                    out.append(not_supported(f"{rp}.operations", op, OPERATIONS))
            if rule.get("scope") not in ("*", "Cluster", "Namespaced"):
                out.append(
                    not_supported(f"{rp}.scope", rule.get("scope"), ["*", "Cluster", "Namespaced"])
                )
        out += validate_match_conditions(hook.get("matchConditions") or [], p + ".matchConditions")
        out += validate_label_selector(
            hook.get("namespaceSelector") or {}, p + ".namespaceSelector"
        )
        out += validate_label_selector(hook.get("objectSelector") or {}, p + ".objectSelector")
    return out


MAX_MATCH_CONDITIONS = 64


def validate_match_conditions(conditions: list[Any], path: str) -> list[Cause]:
    """Names unique qualified names, at most 64, each expression compiling to a bool: the
    API server compiles the CEL when the configuration is written, not when it is used."""
    out: list[Cause] = []
    if len(conditions) > MAX_MATCH_CONDITIONS:
        out.append(too_many(path, len(conditions), MAX_MATCH_CONDITIONS))
    seen: set[str] = set()
    for j, condition in enumerate(conditions):
        cp = f"{path}[{j}]"
        name = condition.get("name") or ""
        if not name:
            out.append(required(cp + ".name"))
        else:
            out += [invalid(cp + ".name", name, e) for e in qualified_name_errors(name)]
            if name in seen:
                out.append(duplicate(cp + ".name", name))
            seen.add(name)
        expression = condition.get("expression") or ""
        if not expression:
            out.append(required(cp + ".expression"))
            continue
        # The CEL runtime is loaded only for configurations that have conditions.
        from tests.kube_emulator import cel

        try:
            cel.compile_condition(expression)
        except cel.CelCompileError as error:
            out.append(invalid(cp + ".expression", expression, f"compilation failed: {error}"))
    return out


# -- CustomResourceDefinition -----------------------------------------------------------------


def default_crd(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.setdefault("names", {})
    if isinstance(names, dict) and names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})


def validate_crd(obj: Obj, old: Obj | None) -> list[Cause]:
    out: list[Cause] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural = names.get("plural") or ""
    name = (obj.get("metadata") or {}).get("name", "")
    if name != f"{plural}.{group}":
        out.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        out.append(required("spec.group"))
    else:
        out += [invalid("spec.group", group, e) for e in dns1123_subdomain_errors(group)]
        if "." not in group:
            out.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        out.append(required("spec.names.plural"))
    else:
        out += [invalid("spec.names.plural", plural, e) for e in dns1123_label_errors(plural)]
    if not names.get("kind"):
        out.append(required("spec.names.kind"))
    if not names.get("listKind"):
        out.append(required("spec.names.listKind"))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        out.append(not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        out.append(
            required("spec.versions", "must have exactly one version marked as storage version")
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        out.append(
            invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    seen: set[str] = set()
    for i, v in enumerate(versions):
        p = f"spec.versions[{i}]"
        vname = v.get("name") or ""
        if not vname:
            out.append(required(p + ".name"))
        elif vname in seen:
            out.append(invalid(p + ".name", vname, "must appear only once"))
        seen.add(vname)
        if "served" not in v:
            out.append(required(p + ".served"))
        if "storage" not in v:
            out.append(required(p + ".storage"))
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            out.append(required(p + ".schema.openAPIV3Schema", "schemas are required"))
        elif schema.get("type") != "object":
            out.append(
                invalid(
                    p + ".schema.openAPIV3Schema.type",
                    schema.get("type"),
                    "must be object at the root",
                )
            )
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("scope") != scope:
            out.append(invalid("spec.scope", scope, "field is immutable"))
    return out


# -- dispatch ---------------------------------------------------------------------------------

Validator = Callable[[Obj, Obj | None], list[Cause]]

VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "configmaps"): validate_configmap,
    ("", "pods"): validate_pod,
    ("", "nodes"): validate_node,
    ("apps", "deployments"): validate_deployment,
    ("apps", "statefulsets"): validate_statefulset,
    ("apps", "replicasets"): validate_replicaset,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): lambda o, old: (
        validate_webhook_configuration(o, old, True)
    ),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): lambda o, old: (
        validate_webhook_configuration(o, old, False)
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): validate_crd,
}

DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("", "pods"): default_pod,
    ("", "namespaces"): default_namespace,
    ("apps", "deployments"): default_deployment,
    ("apps", "statefulsets"): default_statefulset,
    ("apps", "replicasets"): default_replicaset,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): lambda o: (
        default_webhook_configuration(o, True)
    ),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): lambda o: (
        default_webhook_configuration(o, False)
    ),
    ("apiextensions.k8s.io", "customresourcedefinitions"): default_crd,
}

# Namespaces are DNS labels; everything else we serve is a DNS subdomain.
NAME_CHECKS: dict[tuple[str, str], NameCheck] = {
    ("", "namespaces"): dns1123_label_errors,
}


def name_check(group: str, resource: str) -> NameCheck:
    return NAME_CHECKS.get((group, resource), dns1123_subdomain_errors)

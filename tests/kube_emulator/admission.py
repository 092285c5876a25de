"""The webhook admission chain: Mutating- and ValidatingWebhookConfigurations, called as the
API server calls them (k8s.io/apiserver/pkg/admission/plugin/webhook).

The REST layer calls `AdmissionChain.admit` for each write after defaulting and before storing.
Mutating webhooks run in order of configuration name, each configuration's webhooks in order,
and each sees the object as patched by the ones before; validating webhooks run afterwards, all
at once, on the final object. A webhook is called when its rules, objectSelector and
namespaceSelector match; it gets an `admission.k8s.io/v1` AdmissionReview POSTed over HTTPS,
its certificate checked against `caBundle`; its answer is checked like the API server checks it.

Errors carry the API server's codes, reasons and messages:

- a denial: the webhook's `status` (code below 400 → 400), message prefixed
  `admission webhook "<name>" denied the request: ` (errors.ToStatusErr);
- a webhook that cannot be called or answers nonsense: skipped under `failurePolicy: Ignore`,
  else 500 InternalError `Internal error occurred: failed calling webhook "<name>": <why>`
  (webhookutil.ErrCallingWebhook, apierrors.NewInternalError);
- a patch that does not apply: 500 InternalError whatever the failurePolicy;
- a dry run reaching a webhook with `sideEffects` `Some` or `Unknown`: 400 BadRequest
  `admission webhook "<name>" does not support dry run`.

matchConditions are evaluated with a real CEL runtime (`cel.py`, loaded only when a webhook has
conditions) after the selectors: any condition false skips the webhook; an evaluation error
skips it under `failurePolicy: Ignore` and refuses the write with 403 Forbidden under Fail.

Warnings the webhooks return are kept per thread in `last_warnings` (the server reads them on
the thread that called `admit`). Audit annotations go to `audit_events()`, one event per
admitted or refused write, as the API server files them (admission.Attributes.AddAnnotation):
each key becomes `<webhook name>/<key>`; one that is then no qualified name, or that would
overwrite another value, is dropped. Left out: reinvocationPolicy IfNeeded (webhooks run once),
the `authorizer` CEL variable, conversion for matchPolicy Equivalent (the emulator serves one
version per resource, so Equivalent and Exact match the same requests), admissionReviewVersions
other than v1, the rest of an audit event (users, stages, the patch annotations), client
certificates towards webhooks.
"""

from __future__ import annotations

import base64
import binascii
import copy
import http.client
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from tests.kube_emulator.patch import PatchError, PatchFormatError, decode_json_patch, json_patch
from tests.kube_emulator.validation import qualified_name_errors

ADMISSION_GROUP = "admissionregistration.k8s.io"
REVIEW_API_VERSION = "admission.k8s.io/v1"
DEFAULT_TIMEOUT_SECONDS = 10
USER_INFO = {"username": "emulator-admin", "groups": ["system:masters", "system:authenticated"]}
MAX_AUDIT_EVENTS = 20_000

# The API server never sends its own admission configuration through webhooks, or a broken
# webhook could lock everyone out of fixing it (IsExemptAdmissionConfigurationResource).
_EXEMPT_RESOURCES = frozenset(
    {
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    }
)

# Per operation, the options object AdmissionReview.request.options carries.
_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class Store(Protocol):
    def get(
        self, group: str, resource: str, namespace: str, name: str
    ) -> dict[str, Any] | None: ...

    def list(
        self, group: str, resource: str, namespace: str | None = None
    ) -> list[dict[str, Any]]: ...


class AdmissionDenied(Exception):
    """The write is refused; the REST layer answers with this as a `Status`."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details:
            out["details"] = self.details
        out["code"] = self.code
        return out


def internal_error(why: str) -> AdmissionDenied:
    """apierrors.NewInternalError: the message prefixed, the cause repeated in details."""
    return AdmissionDenied(
        500, "InternalError", f"Internal error occurred: {why}", {"causes": [{"message": why}]}
    )


class _CallFailed(Exception):
    """webhookutil.ErrCallingWebhook: the failurePolicy decides whether it stops the write."""

    def __init__(self, hook_name: str, reason: str) -> None:
        super().__init__(reason)
        self.text = f"failed calling webhook {json.dumps(hook_name)}: {reason}"


@dataclass(frozen=True)
class _Request:
    operation: str
    group: str
    version: str
    kind: str
    resource: str
    subresource: str
    namespace: str
    name: str
    old: dict[str, Any] | None
    dry_run: bool

    @property
    def kind_gvk(self) -> dict[str, str]:
        # The scale subresource of every workload speaks autoscaling/v1 Scale, whatever the
        # parent's group (the object an AdmissionReview carries on /scale is a Scale).
        if self.subresource == "scale" and self.kind == "Scale":
            return {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        return {"group": self.group, "version": self.version, "kind": self.kind}

    @property
    def gvr(self) -> dict[str, str]:
        return {"group": self.group, "version": self.version, "resource": self.resource}


@dataclass
class _Hook:
    configuration: str
    spec: dict[str, Any]
    mutating: bool

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def ignores_failures(self) -> bool:
        # v1 defaults failurePolicy to Fail.
        return bool(self.spec.get("failurePolicy", "Fail") == "Ignore")

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)


@dataclass
class _Outcome:
    """What one webhook answered: its warnings, and a refusal or a patched object."""

    warnings: list[str] = field(default_factory=list)
    denied: AdmissionDenied | None = None
    patched: dict[str, Any] | None = None
    audit: dict[str, str] = field(default_factory=dict)  # keys already `<webhook>/<key>`


class AdmissionChain:
    """Runs the registered admission webhooks for one write at a time (thread-safe).

    `service_addresses` maps `"<namespace>/<name>"` of a `service:` clientConfig to the local
    `host:port` that plays the Service; `"<namespace>/<name>:<port>"` picks one port of it.
    `defaulter`, if the server sets it, re-applies built-in defaults to an object a webhook
    patched, as the API server does after each mutation (called as defaulter(group, resource,
    obj), in place).
    """

    def __init__(self, store: Store, service_addresses: dict[str, str]) -> None:
        self._store = store
        self._services = dict(service_addresses)
        self._local = threading.local()
        self.defaulter: Callable[[str, str, dict[str, Any]], None] | None = None
        self._audit_lock = threading.Lock()
        self._audit: list[dict[str, Any]] = []

    @property
    def last_warnings(self) -> list[str]:
        """Warnings of the calling thread's last `admit`, in order, duplicates dropped."""
        return list(getattr(self._local, "warnings", []))

    def audit_events(self) -> list[dict[str, Any]]:
        """`{"operation", "resource", "subresource", "namespace", "name", "annotations"}` per
        write that reached a webhook, oldest first; `name` is the stored (patched) name."""
        with self._audit_lock:
            return list(self._audit)

    def clear_audit(self) -> None:
        with self._audit_lock:
            self._audit.clear()

    def _file_audit(
        self, req: _Request, obj: dict[str, Any] | None, annotations: dict[str, str]
    ) -> None:
        name = ((obj or {}).get("metadata") or {}).get("name") or req.name
        event = {
            "operation": req.operation,
            "resource": req.resource,
            "subresource": req.subresource,
            "namespace": req.namespace,
            "name": name,
            "annotations": dict(annotations),
        }
        with self._audit_lock:
            self._audit.append(event)
            if len(self._audit) > MAX_AUDIT_EVENTS:
                del self._audit[: MAX_AUDIT_EVENTS // 2]

    def admit(
        self,
        *,
        operation: str,
        group: str,
        version: str,
        kind: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        dry_run: bool,
    ) -> dict[str, Any] | None:
        """Mutating webhooks (in name order, each config's webhooks in order), then validating;
        returns the (possibly patched) object; raises AdmissionDenied."""
        self._local.warnings = []
        if group == ADMISSION_GROUP and resource in _EXEMPT_RESOURCES:
            return obj
        if group == "" and resource == "namespaces" and not subresource:
            # For a Namespace itself the admission attributes carry its name as the namespace
            # (the rules' scope check relies on that).
            namespace = name
        req = _Request(
            operation, group, version, kind, resource, subresource, namespace, name, old, dry_run
        )
        current = copy.deepcopy(obj)
        audit: dict[str, str] = {}
        called = False
        try:
            for hook in self._hooks("mutatingwebhookconfigurations", mutating=True):
                if not self._should_call(hook, req, current):
                    continue
                called = True
                try:
                    outcome = self._call(hook, req, current)
                except _CallFailed as failure:
                    if hook.ignores_failures:
                        continue
                    raise internal_error(failure.text) from None
                self._add_warnings(outcome.warnings)
                _add_audit(audit, outcome.audit)
                if outcome.denied is not None:
                    raise outcome.denied
                if outcome.patched is not None:
                    current = outcome.patched
                    if self.defaulter is not None:
                        self.defaulter(group, resource, current)
            validated = self._validate(req, current)
            called = called or bool(validated)
            for outcome in validated:
                self._add_warnings(outcome.warnings)
                _add_audit(audit, outcome.audit)
            for outcome in validated:
                if outcome.denied is not None:
                    raise outcome.denied
            return current
        finally:
            if called:
                self._file_audit(req, current, audit)

    # --- which webhooks -------------------------------------------------------------------

    def _hooks(self, resource: str, *, mutating: bool) -> list[_Hook]:
        configs = sorted(
            self._store.list(ADMISSION_GROUP, resource),
            key=lambda c: str((c.get("metadata") or {}).get("name", "")),
        )
        return [
            _Hook(str((config.get("metadata") or {}).get("name", "")), spec, mutating)
            for config in configs
            for spec in config.get("webhooks") or []
        ]

    def _should_call(self, hook: _Hook, req: _Request, obj: dict[str, Any] | None) -> bool:
        """Whether the webhook applies (generic.Webhook.ShouldCallHook).

        Raises what the API server raises when a selector cannot be evaluated for a webhook
        whose rules match: a missing namespace is 404, a malformed selector 500.
        """
        rules = hook.spec.get("rules") or []
        if not any(_rule_matches(rule, req) for rule in rules):
            return False
        try:
            object_selector = _Selector(hook.spec.get("objectSelector"))
            namespace_selector = _Selector(hook.spec.get("namespaceSelector"))
        except ValueError as bad:
            raise internal_error(str(bad)) from None
        # Either object may match; a missing one (the old object of a CREATE) never does.
        if not object_selector.empty and not any(
            o is not None and object_selector.matches(_labels(o)) for o in (obj, req.old)
        ):
            return False
        # A cluster-scoped object other than a Namespace is never exempted by namespace.
        scoped = bool(req.namespace) or req.resource == "namespaces"
        if (
            not namespace_selector.empty
            and scoped
            and not namespace_selector.matches(self._namespace_labels(req, obj))
        ):
            return False
        if hook.spec.get("matchConditions"):
            return _conditions_match(hook, req, obj)
        return True

    def _namespace_labels(self, req: _Request, obj: dict[str, Any] | None) -> dict[str, str]:
        if (
            req.group == ""
            and req.resource == "namespaces"
            and not req.subresource
            and req.operation in ("CREATE", "UPDATE")
        ):
            # The namespace being written is not stored yet: its own labels decide.
            labels = _labels(obj)
        else:
            namespace = self._store.get("", "namespaces", "", req.namespace)
            if namespace is None:
                raise AdmissionDenied(
                    404,
                    "NotFound",
                    f'namespaces "{req.namespace}" not found',
                    {"name": req.namespace, "kind": "namespaces"},
                )
            labels = _labels(namespace)
        # The API server keeps this label equal to the name on every namespace, which is what
        # `kubernetes.io/metadata.name NotIn [...]` exclusions rely on.
        return {**labels, "kubernetes.io/metadata.name": req.namespace}

    # --- validating -----------------------------------------------------------------------

    def _validate(self, req: _Request, obj: dict[str, Any] | None) -> list[_Outcome]:
        """Call the validating webhooks that apply, in configuration order."""
        hooks = [
            h
            for h in self._hooks("validatingwebhookconfigurations", mutating=False)
            if self._should_call(h, req, obj)
        ]
        if not hooks:
            return []
        # The API server calls validating webhooks concurrently and reports one failure; here
        # the first in configuration order, so a test sees the same error every run.
        with ThreadPoolExecutor(max_workers=len(hooks)) as pool:
            futures = [pool.submit(self._call_validating, h, req, obj) for h in hooks]
            return [f.result() for f in futures]

    def _call_validating(self, hook: _Hook, req: _Request, obj: dict[str, Any] | None) -> _Outcome:
        # Runs on a pool thread: everything, errors included, comes back as a value.
        try:
            return self._call(hook, req, obj)
        except _CallFailed as failure:
            if hook.ignores_failures:
                return _Outcome()
            return _Outcome(denied=internal_error(failure.text))
        except AdmissionDenied as denied:
            return _Outcome(denied=denied)

    # --- one call -------------------------------------------------------------------------

    def _call(self, hook: _Hook, req: _Request, obj: dict[str, Any] | None) -> _Outcome:
        """Call one webhook. Raises _CallFailed, which the failurePolicy judges, or
        AdmissionDenied for what stops the write regardless (dry run, a patch that fails)."""
        if req.dry_run:
            effects = hook.spec.get("sideEffects")
            if effects is None:
                raise _CallFailed(hook.name, "Webhook SideEffects is nil")
            if effects not in ("None", "NoneOnDryRun"):
                raise AdmissionDenied(
                    400,
                    "BadRequest",
                    f"admission webhook {json.dumps(hook.name)} does not support dry run",
                )
        versions = hook.spec.get("admissionReviewVersions") or ["v1"]
        if "v1" not in versions:
            raise _CallFailed(
                hook.name,
                "could not create admission objects: webhook does not accept known "
                "AdmissionReview versions (v1, v1beta1)",
            )
        uid = str(uuid.uuid4())
        review = {
            "apiVersion": REVIEW_API_VERSION,
            "kind": "AdmissionReview",
            "request": _review_request(uid, req, obj),
        }
        answer = self._post(hook, review)
        response = _verify_response(hook, uid, answer)
        warnings = [w for w in response.get("warnings") or [] if isinstance(w, str)]
        # Filed before the verdict is looked at: a refusal's reasons are audited too.
        audit = _audit_annotations(hook.name, response.get("auditAnnotations") or {})
        if not response.get("allowed"):
            # Warnings of a refusing webhook still reach the client.
            return _Outcome(
                warnings=warnings, denied=_denial(hook.name, response.get("status")), audit=audit
            )
        outcome = _Outcome(warnings=warnings, audit=audit)
        raw_patch = response.get("patch")
        if hook.mutating and raw_patch:
            outcome.patched = _patched(hook, response, raw_patch, obj)
        return outcome

    def _post(self, hook: _Hook, review: dict[str, Any]) -> Any:
        """POST the review, return the decoded JSON answer; transport trouble is _CallFailed."""
        target = self._target(hook)
        timeout = hook.timeout
        # The API server tells the webhook its deadline in the query, rounded up to seconds.
        seconds = int(timeout) if timeout == int(timeout) else int(timeout) + 1
        query = ("&" if "?" in target.path else "?") + f"timeout={seconds}s"
        shown = f"https://{target.authority}{target.path}{query}"
        body = json.dumps(review).encode()
        deadline = time.monotonic() + timeout
        conn: _PinnedHTTPSConnection | None = None
        try:
            context = _tls_context(hook.spec.get("clientConfig") or {})
            conn = _PinnedHTTPSConnection(
                target.host,
                target.port,
                server_hostname=target.tls_name,
                context=context,
                timeout=timeout,
            )
            conn.putrequest("POST", target.path + query, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", target.authority)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Accept", "application/json, */*")
            conn.putheader("User-Agent", "kube-apiserver-admission")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            conn.set_remaining(deadline)
            reply = conn.getresponse()
            conn.set_remaining(deadline)
            payload = reply.read()
        except _BadClientConfig as bad:
            raise _CallFailed(hook.name, f"could not get REST client: {bad}") from None
        except TimeoutError:
            raise _CallFailed(
                hook.name, f'failed to call webhook: Post "{shown}": context deadline exceeded'
            ) from None
        except (OSError, http.client.HTTPException) as err:
            raise _CallFailed(
                hook.name, f'failed to call webhook: Post "{shown}": {_go_net_error(err, target)}'
            ) from None
        finally:
            if conn is not None:
                conn.close()
        return _decode_reply(hook, reply.status, reply.getheader("Content-Type") or "", payload)

    def _target(self, hook: _Hook) -> _Target:
        config = hook.spec.get("clientConfig") or {}
        url = config.get("url")
        service = config.get("service")
        if url and service:
            raise _CallFailed(
                hook.name, "could not get REST client: exactly one of url or service is allowed"
            )
        if url:
            parts = urlsplit(str(url))
            if parts.scheme != "https" or not parts.hostname:
                raise _CallFailed(
                    hook.name,
                    f"could not get REST client: 'https' is the only allowed URL scheme: {url}",
                )
            port = parts.port or 443
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            return _Target(parts.hostname, port, parts.hostname, parts.netloc, path)
        if isinstance(service, dict):
            ns = str(service.get("namespace", ""))
            name = str(service.get("name", ""))
            port = int(service.get("port") or 443)
            path = str(service.get("path") or "/")
            # The API server verifies a Service's certificate for <name>.<namespace>.svc.
            tls_name = f"{name}.{ns}.svc"
            address = self._services.get(f"{ns}/{name}:{port}") or self._services.get(
                f"{ns}/{name}"
            )
            if address is None:
                raise _CallFailed(
                    hook.name,
                    f'failed to call webhook: Post "https://{tls_name}:{port}{path}": dial tcp: '
                    f"lookup {tls_name}: no such host (the emulator maps services with "
                    f"--service-address {ns}/{name}=host:port)",
                )
            host, _, local_port = address.rpartition(":")
            return _Target(host.strip("[]"), int(local_port), tls_name, f"{tls_name}:{port}", path)
        raise _CallFailed(
            hook.name, "could not get REST client: clientConfig has neither url nor service"
        )

    def _add_warnings(self, warnings: list[str]) -> None:
        kept: list[str] = self._local.warnings
        for warning in warnings:
            if warning not in kept:
                kept.append(warning)


# --- the review and its answer ----------------------------------------------------------------


def _review_request(uid: str, req: _Request, obj: dict[str, Any] | None) -> dict[str, Any]:
    """AdmissionRequest as CreateV1AdmissionReview fills it (empty strings are omitted)."""
    out: dict[str, Any] = {
        "uid": uid,
        "kind": req.kind_gvk,
        "resource": req.gvr,
    }
    if req.subresource:
        out["subResource"] = req.subresource
    out["requestKind"] = req.kind_gvk
    out["requestResource"] = req.gvr
    if req.subresource:
        out["requestSubResource"] = req.subresource
    # `name` is omitted (empty) for a create by generateName: the name is generated only after
    # mutating admission.
    if req.name:
        out["name"] = req.name
    if req.namespace:
        out["namespace"] = req.namespace
    out["operation"] = req.operation
    out["userInfo"] = copy.deepcopy(USER_INFO)
    # A DELETE has no new object, a CREATE no old one; both travel as null.
    out["object"] = None if req.operation == "DELETE" else obj
    out["oldObject"] = None if req.operation == "CREATE" else req.old
    out["dryRun"] = req.dry_run
    options_kind = _OPTIONS_KIND.get(req.operation)
    if options_kind is None:
        out["options"] = None
    else:
        options: dict[str, Any] = {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"}
        if req.dry_run:
            options["dryRun"] = ["All"]
        out["options"] = options
    return out


def _conditions_match(hook: _Hook, req: _Request, obj: dict[str, Any] | None) -> bool:
    """matchConditions (matchconditions.matcher, called from ShouldCallHook): any condition false
    skips the webhook; otherwise evaluation errors skip it under failurePolicy Ignore and refuse
    the write under Fail (403 Forbidden, before any webhook is called); all true calls it."""
    # The CEL runtime is loaded only for webhooks that have conditions.
    from tests.kube_emulator import cel

    request = _review_request("", req, obj)
    errors = []
    for condition in hook.spec.get("matchConditions") or []:
        expression = str(condition.get("expression", ""))
        result = cel.evaluate(expression, request["object"], request["oldObject"], request)
        if result is False:
            return False
        if isinstance(result, cel.CelEvalError):
            errors.append(f"expression '{expression}' resulted in error: {result.message}")
    if not errors:
        return True
    if hook.ignores_failures:
        return False
    # utilerrors.NewAggregate: one error as is, several (distinct) in brackets.
    unique = list(dict.fromkeys(errors))
    why = unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"
    resource = req.resource + (f".{req.group}" if req.group else "")
    target = f'{resource} "{req.name}"' if req.name else resource
    details = {"name": req.name, "group": req.group, "kind": req.resource}
    raise AdmissionDenied(403, "Forbidden", f"{target} is forbidden: {why}", details)


def _decode_reply(hook: _Hook, status: int, content_type: str, payload: bytes) -> Any:
    """The webhook's answer as client-go's REST client reads it."""
    if 200 <= status <= 206:
        try:
            return json.loads(payload)
        except (ValueError, UnicodeDecodeError) as err:
            raise _CallFailed(
                hook.name,
                f"failed to call webhook: couldn't get version/kind; json parse error: {err}",
            ) from None
    # A non-2xx answer is an error whatever its body; a Status body lends its message.
    try:
        decoded = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status" and decoded.get("message"):
        raise _CallFailed(hook.name, f"failed to call webhook: {decoded['message']}")
    text = payload.decode("utf-8", "replace").strip() if content_type.startswith("text/") else ""
    raise _CallFailed(hook.name, f"failed to call webhook: {_generic_response(status, text)}")


def _generic_response(status: int, text: str) -> str:
    """errors.NewGenericServerResponse's wording for an answer that is not a Status."""
    fixed = {
        400: "the server rejected our request for an unknown reason",
        401: "the server has asked for the client to provide credentials",
        403: "the server does not allow access to the requested resource",
        404: "the server could not find the requested resource",
        405: "the server does not allow this method on the requested resource",
        409: "the server reported a conflict",
        415: "the server responded with the status code 415 but did not return more information",
        429: "the server has received too many requests and has asked us to try again later",
    }
    if status in fixed:
        return fixed[status]
    if status >= 500:
        return (
            f"an error on the server ({json.dumps(text or 'unknown')}) has prevented the request "
            f"from succeeding"
        )
    return f"the server responded with the status code {status} but did not return more information"


def _verify_response(hook: _Hook, uid: str, answer: Any) -> dict[str, Any]:
    """VerifyAdmissionResponse (v1) plus the decoding checks the typed decoder makes."""

    def invalid(why: str) -> _CallFailed:
        return _CallFailed(hook.name, f"received invalid webhook response: {why}")

    if not isinstance(answer, dict):
        raise _CallFailed(
            hook.name, "failed to call webhook: couldn't get version/kind; json parse error"
        )
    response = answer.get("response")
    if response is None:
        raise invalid("webhook response was absent")
    if not isinstance(response, dict):
        raise _CallFailed(
            hook.name,
            "failed to call webhook: json: cannot unmarshal response into AdmissionResponse",
        )
    got_uid = response.get("uid", "")
    if got_uid != uid:
        raise invalid(f"expected response.uid={json.dumps(uid)}, got {json.dumps(got_uid)}")
    got_gvk = f"{answer.get('apiVersion', '')}, Kind={answer.get('kind', '')}"
    if got_gvk != f"{REVIEW_API_VERSION}, Kind=AdmissionReview":
        raise invalid(
            f"expected webhook response of {REVIEW_API_VERSION}, Kind=AdmissionReview, "
            f"got {got_gvk}"
        )
    for key, kind in (
        ("allowed", bool),
        ("patch", str),
        ("patchType", str),
        ("status", dict),
        ("warnings", list),
        ("auditAnnotations", dict),
    ):
        value = response.get(key)
        if value is not None and not isinstance(value, kind):
            raise _CallFailed(
                hook.name,
                f"failed to call webhook: json: cannot unmarshal {type(value).__name__} into Go "
                f"struct field AdmissionResponse.response.{key}",
            )
    patch, patch_type = response.get("patch"), response.get("patchType")
    if hook.mutating:
        if patch and patch_type is None:
            raise invalid("webhook returned response.patch but not response.patchType")
        if not patch and patch_type is not None:
            raise invalid("webhook returned response.patchType but not response.patch")
        if patch_type == "":
            raise invalid('webhook returned invalid response.patchType of ""')
    else:
        if patch:
            raise invalid("validating webhook may not return response.patch")
        if patch_type is not None:
            raise invalid("validating webhook may not return response.patchType")
    return response


def _audit_annotations(hook_name: str, raw: dict[str, Any]) -> dict[str, str]:
    """`<webhook>/<key>` for each key that then makes a qualified name (checkKeyFormat); the
    API server logs and drops the rest. Non-string values do not decode into map[string]string
    and fail the call in the real server; here they are dropped too."""
    kept: dict[str, str] = {}
    for key, value in raw.items():
        full = f"{hook_name}/{key}"
        if not isinstance(value, str) or full.count("/") != 1 or qualified_name_errors(full):
            continue
        kept[full] = value
    return kept


def _add_audit(audit: dict[str, str], new: dict[str, str]) -> None:
    # AddAnnotation refuses to overwrite a key with another value; the first one stays.
    for key, value in new.items():
        audit.setdefault(key, value)


def _denial(hook_name: str, status: Any) -> AdmissionDenied:
    """errors.ToStatusErr: the webhook's Status, its message prefixed, never a success code."""
    result = status if isinstance(status, dict) else {}
    code = result.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else 0
    code = max(code, 400)
    denied_by = f"admission webhook {json.dumps(hook_name)} denied the request"
    message, reason = str(result.get("message") or ""), str(result.get("reason") or "")
    if message:
        text = f"{denied_by}: {message}"
    elif reason:
        text = f"{denied_by}: {reason}"
    else:
        text = f"{denied_by} without explanation"
    details = result.get("details") if isinstance(result.get("details"), dict) else None
    return AdmissionDenied(code, reason, text, details)


def _patched(
    hook: _Hook, response: dict[str, Any], raw_patch: str, obj: dict[str, Any] | None
) -> dict[str, Any] | None:
    try:
        patch_bytes = base64.b64decode(raw_patch, validate=True)
    except (binascii.Error, ValueError) as err:
        raise _CallFailed(
            hook.name, f"failed to call webhook: illegal base64 data: {err}"
        ) from None
    try:
        ops = decode_json_patch(json.loads(patch_bytes))
    except (ValueError, UnicodeDecodeError, PatchFormatError) as err:
        raise _CallFailed(
            hook.name, f"received undecodable patch in webhook response: {err}"
        ) from None
    if not ops:
        return None
    if obj is None:
        raise internal_error(
            f"admission webhook {json.dumps(hook.name)} attempted to modify the object, which is "
            f"not supported for this operation"
        )
    if response.get("patchType") != "JSONPatch":
        raise _CallFailed(
            hook.name, f"unsupported patch type {json.dumps(response.get('patchType'))}"
        )
    try:
        result = json_patch(obj, ops)
    except PatchError as err:
        # Not a call failure: a webhook that answered with a broken patch stops the write even
        # under failurePolicy Ignore.
        raise internal_error(str(err)) from None
    if not isinstance(result, dict):
        raise internal_error(
            "couldn't get version/kind; json parse error: patched object is not a JSON object"
        )
    return result


# --- labels and selectors -------------------------------------------------------------------


def _labels(obj: dict[str, Any] | None) -> dict[str, str]:
    if not isinstance(obj, dict):
        return {}
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class _Selector:
    """metav1.LabelSelector with LabelSelectorAsSelector's rules; null or {} selects all."""

    def __init__(self, raw: Any) -> None:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ValueError("invalid label selector")
        self._equal = dict(raw.get("matchLabels") or {})
        self._expressions: list[tuple[str, str, list[str]]] = []
        for expr in raw.get("matchExpressions") or []:
            key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
            values = [str(v) for v in expr.get("values") or []]
            if op in ("In", "NotIn") and not values:
                raise ValueError("for 'in', 'notin' operators, values set can't be empty")
            if op in ("Exists", "DoesNotExist") and values:
                raise ValueError("values set must be empty for exists and does not exist")
            if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise ValueError(f"{json.dumps(op)} is not a valid label selector operator")
            self._expressions.append((key, op, values))

    @property
    def empty(self) -> bool:
        return not self._equal and not self._expressions

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != str(v) for k, v in self._equal.items()):
            return False
        for key, op, values in self._expressions:
            present = key in labels
            if op == "In" and not (present and labels[key] in values):
                return False
            # NotIn also selects objects without the label at all.
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


def _rule_matches(rule: dict[str, Any], req: _Request) -> bool:
    """rules.Matcher.Matches: scope, operation, group, version and resource[/subresource]."""
    scope = rule.get("scope") or "*"
    is_namespace = req.group == "" and req.resource == "namespaces"
    if scope == "Namespaced" and (is_namespace or not req.namespace):
        return False
    # Namespaces are cluster-scoped even though their requests carry a namespace.
    if scope == "Cluster" and not (is_namespace or not req.namespace):
        return False
    if scope not in ("*", "Namespaced", "Cluster"):
        return False
    operations = rule.get("operations") or []
    if not ("*" in operations or req.operation in operations):
        return False
    if not _exact_or_wildcard(rule.get("apiGroups") or [], req.group):
        return False
    if not _exact_or_wildcard(rule.get("apiVersions") or [], req.version):
        return False
    for entry in rule.get("resources") or []:
        res, _, sub = str(entry).partition("/")
        # "pods" matches only the main resource, "pods/*" and "*/*" the resource and all its
        # subresources, "*/scale" every scale subresource.
        if (res in ("*", req.resource)) and (sub in ("*", req.subresource)):
            return True
    return False


def _exact_or_wildcard(items: list[Any], wanted: str) -> bool:
    return any(item in ("*", wanted) for item in items)


# --- HTTPS ------------------------------------------------------------------------------------


class _BadClientConfig(Exception):
    pass


@dataclass(frozen=True)
class _Target:
    host: str  # where to connect
    port: int
    tls_name: str  # the name the certificate must carry
    authority: str  # Host header and error messages
    path: str


def _tls_context(client_config: dict[str, Any]) -> ssl.SSLContext:
    bundle = client_config.get("caBundle")
    if not bundle:
        # Without caBundle the API server trusts the system roots.
        return ssl.create_default_context()
    try:
        pem = base64.b64decode(bundle, validate=True).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _BadClientConfig(
            "unable to load root certificates: unable to parse bytes as PEM block"
        ) from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise _BadClientConfig(
            "unable to load root certificates: unable to parse bytes as PEM block"
        )
    try:
        return ssl.create_default_context(cadata=pem)
    except ssl.SSLError as err:
        raise _BadClientConfig(f"unable to load root certificates: {err}") from None


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to host:port while verifying the certificate for another name (a Service's DNS
    name while the emulator connects to a local address)."""

    def __init__(
        self, host: str, port: int, *, server_hostname: str, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_name = server_hostname
        self._tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = self._tls_context.wrap_socket(raw, server_hostname=self._tls_name)
        except BaseException:
            raw.close()
            raise

    def set_remaining(self, deadline: float) -> None:
        # One deadline for the whole call, like the API server's context timeout, rather than
        # a fresh timeout per socket operation.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if self.sock is not None:
            self.sock.settimeout(remaining)


def _go_net_error(err: BaseException, target: _Target) -> str:
    """A transport error in the words Go's net/http and crypto/tls would use."""
    if isinstance(err, ConnectionRefusedError):
        return f"dial tcp {target.host}:{target.port}: connect: connection refused"
    if isinstance(err, ssl.SSLCertVerificationError):
        x509 = "tls: failed to verify certificate: x509:"
        code = getattr(err, "verify_code", 0)
        if code in (18, 19, 20, 21):
            return f"{x509} certificate signed by unknown authority"
        if code == 10:
            return f"{x509} certificate has expired or is not yet valid"
        if code == 62:
            return f"{x509} certificate is not valid for {target.tls_name}"
        return f"{x509} {getattr(err, 'verify_message', err)}"
    if isinstance(err, ssl.SSLError):
        return f"remote error: tls: {err.reason or err}"
    if isinstance(err, (ConnectionResetError, http.client.RemoteDisconnected)):
        return "EOF"
    return str(err) or type(err).__name__

"""A Kubernetes API server stand-in for tests: real REST semantics, standard library only (plus a
CEL runtime, cel-expr-python, loaded only for webhook matchConditions).

Run `python -m tests.kube_emulator --port 0 --kubeconfig PATH [--tls CERT KEY] [--tls-ca CA]
[--seed none|namespaces|sandbox] [--service-address ns/name=host:port ...]`; it listens on
127.0.0.1, writes a kubeconfig (JSON, which is YAML) for the official `kubernetes` client or
kubectl, and prints `READY <url>` when it accepts connections. Tests get it through the
fixtures of `tests.kube_emulator.pytest_plugin`.

Covered (SPEC 14):

- resources: core/v1 namespaces, pods (+status, binding), nodes (+status), configmaps;
  apps/v1 deployments, statefulsets, replicasets (+status, +scale as autoscaling/v1 Scale);
  admissionregistration.k8s.io/v1 mutating- and validatingwebhookconfigurations;
  apiextensions.k8s.io/v1 customresourcedefinitions, whose creation registers the custom
  resource at once (Established), with /status and /scale when the CRD asks for them;
- discovery (`/api`, `/apis`, group and resource lists), `/version`, `/healthz`;
- one store lock and a global resourceVersion; create (generateName, dryRun, 404 for a missing
  namespace, 403 in a terminating one, 409 AlreadyExists), get, list (limit/continue,
  remainingItemCount, 410 for a continue token older than the event log), PUT with the
  resourceVersion precondition (409 Conflict; none = unconditional, except custom resources:
  422), PATCH as JSON merge, JSON patch (as evanphx/json-patch v4 applies it, patch.py) and
  strategic merge (415 for custom resources),
  DELETE with uid/resourceVersion preconditions, finalizers, graceful deletion of bound pods
  (no kubelet: they stay Terminating until deleted with gracePeriodSeconds=0), namespace
  cascade, deletecollection; watch from a resourceVersion with timeoutSeconds and label/field
  selectors (objects leaving a selector arrive as DELETED), 410 Expired for compacted versions;
- errors as `Status` with the API server's reasons and messages (NotFound, AlreadyExists,
  Conflict, Invalid with details.causes, BadRequest, Forbidden, MethodNotAllowed,
  UnsupportedMediaType, Expired);
- validation (validation.py) and defaults of the served kinds; metadata.generation counting
  spec changes; custom resources validated and pruned by their structural schema (crd.py);
- the admission chain (admission.py) on writes of pods, deployments, statefulsets (incl. their
  /scale) and custom resources, after defaulting and before persisting, with webhook
  matchConditions compiled on write and evaluated by a real CEL runtime (cel.py);
- test controls under `/_emulator/` (control.py): request log, scripted faults, reset, compact.

Out of scope: protobuf and CBOR (415 for such bodies), YAML bodies, server-side apply
(application/apply-patch+yaml → 415), authentication, authorization and RBAC, aggregated APIs,
conversion webhooks and conversion between CRD versions, CEL rules other than matchConditions
(x-kubernetes-validations, ValidatingAdmissionPolicy), built-in admission plugins beyond
NamespaceLifecycle, controllers (no ReplicaSets or pods appear for a Deployment, nothing updates
status), garbage collection (ownerReferences and propagationPolicy are stored, not acted on),
managedFields, Table output, watch bookmarks, list consistency across continue pages (pages come
from the current state).
"""

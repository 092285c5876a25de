"""The standalone install's webhook configurations, pointed at a local server and registered."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import yaml

from tests.helpers import KUBECTL, ROOT


def webhook_configurations(port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """The standalone install's two configurations, pointed at https://127.0.0.1:<port>.

    Built with `kubectl kustomize` from the real manifests, so rules, selectors, failure
    policies and timeouts are production's; only each `service` target becomes a `url` with
    the same path, and the CA cert-manager would inject is ours.
    """
    built = subprocess.run(
        [str(KUBECTL), "kustomize", str(ROOT / "knative" / "standalone")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    kinds = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    configurations = [doc for doc in yaml.safe_load_all(built) if doc and doc["kind"] in kinds]
    bundle = base64.b64encode(ca_pem).decode()
    for configuration in configurations:
        configuration["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
        for webhook in configuration["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
    return configurations


def register(api_client: Any, configurations: list[dict[str, Any]]) -> None:
    from kubernetes import client

    api = client.AdmissionregistrationV1Api(api_client)
    for configuration in configurations:
        if configuration["kind"] == "MutatingWebhookConfiguration":
            api.create_mutating_webhook_configuration(configuration)
        else:
            api.create_validating_webhook_configuration(configuration)

"""validate_cocoonhibernation against the emulator: LIST pages per admission, throughput, latency.

Each admission LISTs the CocoonHibernations of its namespace, so its cost grows with how many the
namespace holds. Starts the emulator (sandbox seed: the CocoonHibernation CRD) and the function as
a real `functions-framework` process, then for namespaces holding 0, 100 and 1,000 of them prints
the API requests one admission makes and req/s, p50/p99 at concurrency 1 and 8 (an allowed CREATE,
the worst case: the whole LIST is read and nothing matches).

    .venv/bin/python bench/hibernation_bench.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import function_on_emulator, load
from tests.helpers import review
from tests.helpers.demo import hibernation

GROUP = "cocoonset.cocoonstack.io"
SIZES = (0, 100, 1000)


def post(port: int, body: bytes) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/validate-cocoonhibernation",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        data: bytes = reply.read()
        return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    import kubernetes

    source = "functions/validate_cocoonhibernation.py"
    quiet = {"WEBHOOK_LOG_LEVEL": "warn"}
    with function_on_emulator(source, "validate_cocoonhibernation", quiet) as (emulator, port):
        api = emulator.api_client()
        core = kubernetes.client.CoreV1Api(api)
        custom = kubernetes.client.CustomObjectsApi(api)
        print(f"{'stored':>7}{'API requests':>14}{'conc':>6}{'req/s':>8}{'p50 ms':>9}"
              f"{'p99 ms':>9}")  # fmt: skip
        for size in SIZES:
            namespace = f"ns-{size}"
            core.create_namespace({"metadata": {"name": namespace}})
            for index in range(size):
                name = f"agent-{index}"
                custom.create_namespaced_custom_object(
                    GROUP, "v1", namespace, "cocoonhibernations",
                    hibernation(name, name, namespace),
                )  # fmt: skip
            fresh = hibernation("fresh-0", "fresh-0", namespace)
            body = json.dumps(
                review(fresh, None, operation="CREATE", kind="CocoonHibernation", group=GROUP,
                       resource="cocoonhibernations", namespace=namespace, name="fresh-0")
            ).encode()  # fmt: skip
            emulator.clear_requests()
            reply = json.loads(post(port, body))["response"]
            assert reply["allowed"] is True, reply
            calls = [r for r in emulator.requests() if not r["path"].startswith("/_emulator")]
            for concurrency in (1, 8):
                result = load(port, "/validate-cocoonhibernation", body, concurrency, args.seconds)
                errors = f"  errors={result.errors}" if result.errors else ""
                print(f"{size:>7}{len(calls):>14}{concurrency:>6}{result.rate:>8.0f}"
                      f"{result.p50:>9.1f}{result.quantile(0.99):>9.1f}{errors}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Coverage-guided fuzzing (atheris, libFuzzer) of the envelope and object decoders.

Each input's first byte picks a decoder, the rest is its body. Every decoder must either
return or raise its own documented error (the one the shell turns into a 400 or a verdict);
anything else, RecursionError included, is a crash that libFuzzer reports with the input.

    make fuzz SECONDS=60          # or: .venv/bin/python bench/fuzz_decoders.py -max_total_time=60

Crashing inputs land in the working directory as crash-<sha1>; pass one as an argument to
replay it. atheris is a dev dependency on Linux x86-64, where it installs from a wheel;
elsewhere this script says so and exits.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

try:
    import atheris
except ImportError:  # dev dependency only where its wheel exists (pyproject.toml)
    sys.exit("atheris is not installed (it ships wheels for Linux x86-64 only); nothing to fuzz")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["common"]):
    from common import strict_json
    from common.decisions import validate as workload
    from common.decisions import validate_cocoonhibernation as hibernation
    from common.decisions import validate_cocoonset as cocoonset
    from common.models import EnvelopeError, encode_response, parse_review
    from common.pod import decode_pod
    from common.reap_target import NotACloudEvent, parse_event
    from common.reservation import MalformedEntry, decode
    from common.verdict import Verdict, allow, deny


def _envelope(data: bytes) -> None:
    try:
        request = parse_review(data)
    except EnvelopeError as exc:
        str(exc).encode("utf-8")  # the 400 reply's body: it may quote the input
        return
    encode_response(request.uid, allow())
    # A denial names the request's fields (validate: "<namespace>/<name>"): they must encode.
    described = f"{request.kind.kind} {request.namespace}/{request.name} {request.operation}"
    encode_response(request.uid, deny(described))


def _json(data: bytes) -> Any:
    try:
        return strict_json.loads(data.decode("utf-8", "surrogatepass"))
    except ValueError:
        return None


def _pod(data: bytes) -> None:
    decode_pod(_json(data))  # returns its error, never raises


def _reply(verdict: Verdict) -> None:
    # A verdict echoes what it read (names, enum values); the reply must still encode.
    encode_response("u", verdict)


def _workloads(data: bytes) -> None:
    obj = _json(data)
    _reply(workload.object_verdict("Deployment", "ns", "name", obj, obj))
    with contextlib.suppress(workload.WorkloadDecodeError):
        workload.decode_scale_replicas(obj)
    workload.parent_is_cocoon(obj)


def _cocoonset(data: bytes) -> None:
    obj = _json(data)
    _reply(cocoonset.decide("CREATE", obj, None))
    _reply(cocoonset.decide("UPDATE", obj, obj))


def _hibernation(data: bytes) -> None:
    obj = _json(data)
    checked = hibernation.precheck("CREATE", obj, "")
    if isinstance(checked, hibernation.Hibernation):
        hibernation.namespace_problem(checked.namespace)
        # A listed item is parsed JSON we did not check either: the input's `items`, if any.
        items = obj.get("items") if isinstance(obj, dict) else None
        checked = hibernation.uniqueness_verdict(
            checked, items if isinstance(items, list) else [obj]
        )
    _reply(checked)


def _reservation(data: bytes) -> None:
    with contextlib.suppress(MalformedEntry, UnicodeDecodeError):
        decode(data.decode("utf-8", "surrogatepass"))


def _event(data: bytes) -> None:
    for headers in (
        {"content-type": "application/cloudevents+json"},
        {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "1",
         "ce-source": "s", "ce-type": "t"},
    ):  # fmt: skip
        with contextlib.suppress(NotACloudEvent):
            parse_event(headers, data)


DECODERS = (_envelope, _pod, _workloads, _cocoonset, _reservation, _event, _hibernation)


def one_input(data: bytes) -> None:
    if not data:
        return
    DECODERS[data[0] % len(DECODERS)](data[1:])


CORPUS = Path(__file__).resolve().parent.parent / ".fuzz-corpus"


def seed_corpus() -> Path:
    """Valid inputs for each decoder, so the fuzzer starts from the shapes that go deep."""
    import json

    from bench.admission_bench import bodies
    from tests.cluster import cocoon_pod
    from tests.helpers.demo import hibernation as cocoon_hibernation

    CORPUS.mkdir(exist_ok=True)
    reviews = bodies()
    seeds = [
        (0, reviews["validate"]),
        (0, reviews["validate_cocoonset"]),
        (0, b'{"apiVersion":"admission.k8s.io/v1\\ud800","kind":"AdmissionReview"}'),
        (1, json.dumps(cocoon_pod(name="p", rs="demo-6d4b7c9f8")).encode()),
        (2, json.dumps(json.loads(reviews["validate"])["request"]["object"]).encode()),
        (3, json.dumps(json.loads(reviews["validate_cocoonset"])["request"]["object"]).encode()),
        # A lone surrogate escape in a value a denial quotes (Go decodes it to U+FFFD).
        (3, b'{"spec":{"agent":{"image":"i","mode":"x\\ud800"}}}'),
        (4, b'{"pool":"default","namespace":"ns","deployment":"d","slot":1,"vmName":"vk-ns-d-1",'
            b'"pod":"d-1","node":"n","updatedAt":"2026-01-01T00:00:00.123456789Z"}'),
        (5, b'{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"dryRun":true}}'),
        (6, json.dumps({**cocoon_hibernation("a-0", "a-0", "ns"),
                        "items": [cocoon_hibernation("b", "a-0", "ns")]}).encode()),
    ]  # fmt: skip
    for index, (decoder, body) in enumerate(seeds):
        (CORPUS / f"seed-{index}").write_bytes(bytes([decoder]) + body)
    return CORPUS


def main() -> None:
    args = list(sys.argv)
    if not any(not arg.startswith("-") for arg in args[1:]):
        args.append(str(seed_corpus()))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""`kubectl cocoon`: the operator's view of the affinity ConfigMaps, and guarded edits of them.

Installed as the console script `kubectl-cocoon`, which kubectl runs as `kubectl cocoon ...`.
Reads and writes go through `KubeApi`; what is shown and what a write changes is decided in
`common.decisions.operator` and printed by `common.operator_view`. Every write is a PUT guarded
by the resourceVersion it was planned from: a 409 means mutate or the reaper wrote first, so the
ConfigMap is read again and the change planned again on what is there now. Nothing the webhooks
wrote meanwhile is overwritten, and a release whose entry changed since it was read stops.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

from common.config import ConfigError, Settings
from common.decisions import operator
from common.decisions.reap import Presence, needed_namespaces
from common.kube import (
    ClientKubeApi,
    ConfigMap,
    Conflict,
    KubeApi,
    KubeError,
    NotFound,
    context_namespace,
)
from common.logs import ROOT_LOGGER, context_of
from common.naming import AFFINITY_NAMESPACE, MANAGED_BY_LABEL, MANAGED_BY_VALUE, POOL_KEY
from common.operator_view import (
    document,
    pool_item,
    pools_table,
    render,
    reservation_item,
    reservations_table,
    table,
)
from common.reaper import sweep
from common.reservation import read_entries

CALL_TIMEOUT_S = 30.0
# Lost writes before giving up; a webhook burst settles long before this.
MAX_ATTEMPTS = 16
LIST_WORKERS = 8
OUTPUTS = ("table", "wide", "json", "yaml")


class CliError(Exception):
    """Printed as `error: <message>`, exit status 1."""


@dataclass
class Context:
    kube: KubeApi
    settings: Settings
    namespace: str | None  # None: all namespaces
    output: str
    out: TextIO
    err: TextIO
    now: Callable[[], datetime]
    # -n as given: release and unpin act on every namespace unless told otherwise, since a key
    # or VM name names its namespace, and a retired node concerns them all.
    scope: str | None = None


# --- reading -------------------------------------------------------------------------------------


def affinity_configmaps(kube: KubeApi, pool: str | None = None) -> list[ConfigMap]:
    """The pools' ConfigMaps, found by label: a pool may span several ConfigMaps."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    if pool is not None:
        selector += f",{POOL_KEY}={pool}"
    found = kube.list_configmaps(AFFINITY_NAMESPACE, selector, CALL_TIMEOUT_S)
    return sorted((cm for cm in found if operator.pool_of(cm)), key=lambda cm: cm.name)


def presence(kube: KubeApi, namespaces: set[str]) -> dict[str, Presence | None]:
    """Each namespace's pods; None where the LIST failed (its entries show as unknown)."""

    def listed(namespace: str) -> Presence | None:
        try:
            return Presence.of(kube.list_pods(namespace, "", CALL_TIMEOUT_S))
        except KubeError:
            return None

    ordered = sorted(namespaces)
    if not ordered:
        return {}
    with ThreadPoolExecutor(min(LIST_WORKERS, len(ordered)), "cocoon-list") as pool:
        return dict(zip(ordered, pool.map(listed, ordered), strict=True))


def judged_rows(ctx: Context, configmaps: Sequence[ConfigMap], now: datetime) -> list[operator.Row]:
    window = timedelta(seconds=ctx.settings.inflight_window_s)
    grace = timedelta(seconds=ctx.settings.reaper_grace_s)
    namespaces: set[str] = set()
    for cm in configmaps:
        namespaces |= needed_namespaces(read_entries(cm.data), now, window)
    return operator.rows(configmaps, presence(ctx.kube, namespaces), now, grace, window)


# --- guarded writes ------------------------------------------------------------------------------


def guarded_write(
    kube: KubeApi,
    name: str,
    plan: Callable[[dict[str, str]], dict[str, str] | operator.Stop],
) -> dict[str, str] | operator.Stop:
    """Apply `plan` to one ConfigMap's data with a resourceVersion-guarded PUT, planning again
    on the fresh data after each 409. Returns the data written, or why it stopped."""
    for _ in range(MAX_ATTEMPTS):
        try:
            stored = kube.get_configmap(AFFINITY_NAMESPACE, name, CALL_TIMEOUT_S)
        except NotFound:
            return operator.Stop(f"configmap {AFFINITY_NAMESPACE}/{name} is gone")
        planned = plan(stored.data)
        if isinstance(planned, operator.Stop) or planned == stored.data:
            return planned
        update = ConfigMap(
            name=stored.name,
            namespace=stored.namespace,
            data=planned,
            labels=stored.labels,
            annotations=stored.annotations,
            resource_version=stored.resource_version,
        )
        try:
            kube.replace_configmap(update, CALL_TIMEOUT_S)
        except Conflict:
            continue  # someone else wrote first: read their result and plan again
        except NotFound:
            return operator.Stop(f"configmap {AFFINITY_NAMESPACE}/{name} is gone")
        return planned
    raise CliError(f"configmap {AFFINITY_NAMESPACE}/{name}: {MAX_ATTEMPTS} conflicts in a row")


# --- commands ------------------------------------------------------------------------------------


def cmd_reservations(ctx: Context, args: argparse.Namespace) -> int:
    now = ctx.now()
    found = judged_rows(ctx, affinity_configmaps(ctx.kube, args.pool), now)
    state = operator.State(args.state) if args.state else None
    chosen = operator.select(
        found, pool=args.pool, namespace=ctx.namespace, node=args.node, state=state
    )
    if ctx.output in ("json", "yaml"):
        ctx.out.write(document([reservation_item(r) for r in chosen], ctx.output))
    elif not chosen:
        where = f" in namespace {ctx.namespace}" if ctx.namespace else ""
        ctx.err.write(f"No reservations found{where}.\n")
    else:
        ctx.out.write(reservations_table(chosen, now, wide=ctx.output == "wide"))
    return 0


def cmd_pools(ctx: Context, args: argparse.Namespace) -> int:
    configmaps = affinity_configmaps(ctx.kube, args.pool)
    selector = POOL_KEY if args.pool is None else f"{POOL_KEY}={args.pool}"
    nodes = ctx.kube.list_nodes(selector, CALL_TIMEOUT_S)
    summaries = operator.pools(configmaps, nodes)
    if ctx.output in ("json", "yaml"):
        ctx.out.write(document([pool_item(s) for s in summaries], ctx.output))
    else:
        ctx.out.write(pools_table(summaries))
    return 0


def _describe(row: operator.Row) -> str:
    if row.entry is None:
        return f"{row.pool}/{row.key} (malformed: {row.reason})"
    entry = row.entry
    return (
        f"{row.pool}/{row.key} (vm {entry.vm_name}, pod {entry.namespace}/{entry.pod}, "
        f"node {entry.node or '<none>'}, {row.state})"
    )


_PROTECTED_BECAUSE = {
    operator.State.LIVE: "its pod exists",
    operator.State.IN_FLIGHT: "it was claimed moments ago, its pod may not be listed yet",
    operator.State.UNKNOWN: "its namespace's pods could not be listed",
}


def cmd_release(ctx: Context, args: argparse.Namespace) -> int:
    if (args.key is None) == (args.vm is None):
        raise CliError("give one entry: release KEY, or release --vm NAME")
    now = ctx.now()
    found = operator.matches(
        judged_rows(ctx, affinity_configmaps(ctx.kube, args.pool), now),
        key=args.key,
        vm_name=args.vm,
    )
    if args.configmap is not None:
        found = [r for r in found if r.configmap == args.configmap]
    if ctx.scope is not None:
        found = operator.select(found, namespace=ctx.scope)
    if not found:
        where = f" in namespace {ctx.scope}" if ctx.scope is not None else ""
        raise CliError(f"no reservation {args.key or 'with VM ' + args.vm}{where}")
    if len(found) > 1:
        names = ", ".join(f"{r.pool}/{r.key} in {r.configmap}" for r in found)
        raise CliError(f"{len(found)} entries match ({names}); pick one with --configmap")
    row = found[0]
    if row.protected and not args.force:
        raise CliError(
            f"{_describe(row)}: {_PROTECTED_BECAUSE[row.state]}; releasing it would let another "
            "pod take this VM name. Pass --force to release it anyway"
        )
    if args.dry_run:
        ctx.out.write(f"would release {_describe(row)} from {row.configmap} (dry run)\n")
        return 0
    result = guarded_write(
        ctx.kube, row.configmap, lambda data: operator.release(data, row.key, row.value)
    )
    if isinstance(result, operator.Stop):
        raise CliError(f"nothing released: {result.reason}")
    ctx.out.write(f"released {_describe(row)} from {row.configmap}\n")
    return 0


def _node_still_eligible(ctx: Context, node: str) -> str | None:
    """The pool a node is still labelled for while schedulable: mutate may pick it again."""
    for view in ctx.kube.list_nodes(POOL_KEY, CALL_TIMEOUT_S):
        if view.name == node and not view.unschedulable:
            return view.labels.get(POOL_KEY, "")
    return None


def _unpin_plan(
    node: str, namespace: str | None, changed: list[str], data: dict[str, str]
) -> dict[str, str]:
    new, keys = operator.unpin(data, node, namespace)
    changed[:] = keys
    return new


def cmd_unpin(ctx: Context, args: argparse.Namespace) -> int:
    node = args.node
    now = ctx.now()
    configmaps = affinity_configmaps(ctx.kube, args.pool)
    pinned = operator.select(judged_rows(ctx, configmaps, now), node=node, namespace=ctx.scope)
    if not pinned:
        where = f" in namespace {ctx.scope}" if ctx.scope is not None else ""
        ctx.out.write(f"no reservation{where} is pinned to node {node}\n")
        return 0
    # Said first and loudly: unpinning moves no data, and this is what operators get wrong.
    ctx.err.write(
        f"WARNING: the disks of these {len(pinned)} VMs stay on node {node}. Unpinning only lets "
        "their replacement pods be placed on another node, where they start without that "
        "data. Copy or restore what must survive before their pods are replaced.\n"
    )
    still = _node_still_eligible(ctx, node)
    if still is not None:
        ctx.err.write(
            f"WARNING: node {node} is still schedulable in pool {still}; mutate may place pods "
            f"on it again. Cordon it or remove its {POOL_KEY} label first.\n"
        )
    if args.dry_run:
        ctx.out.write(reservations_table(pinned, now, wide=ctx.output == "wide"))
        ctx.out.write(f"would unpin {len(pinned)} entries from node {node} (dry run)\n")
        return 0
    unpinned: list[str] = []
    for name in sorted({r.configmap for r in pinned}):
        # The keys of the plan that was written: a retry after a 409 may unpin more.
        changed: list[str] = []
        plan = functools.partial(_unpin_plan, node, ctx.scope, changed)
        result = guarded_write(ctx.kube, name, plan)
        if isinstance(result, operator.Stop):
            ctx.err.write(f"{name}: {result.reason}\n")
            continue
        unpinned += [f"{name}/{key}" for key in changed]
    cells = [[entry] for entry in sorted(unpinned)]
    ctx.out.write(table(["UNPINNED"], cells) if cells else "")
    ctx.out.write(f"unpinned {len(unpinned)} entries from node {node}\n")
    return 0


def cmd_sweep(ctx: Context, args: argparse.Namespace) -> int:
    summary = sweep(ctx.kube, ctx.settings, ctx.now(), dry_run=args.dry_run)
    if ctx.output in ("json", "yaml"):
        # The reap function's reply body, as the CronJob sees it.
        ctx.out.write(render(summary.to_json(), ctx.output))
    else:
        doc = summary.to_json()
        headers = ["POOLS", "CHECKED", "MARKED", "CLEARED", "RELEASED", "MALFORMED", "ERRORS",
                   "RETRIES"]  # fmt: skip
        cells = [str(doc[h.lower()]) for h in headers]
        if summary.dry_run:
            headers.append("DRY-RUN")
            cells.append("true")
        ctx.out.write(table(headers, [cells]))
    if not summary.listed:
        raise CliError("sweep failed: the affinity ConfigMaps could not be listed")
    return 1 if summary.errors else 0


# --- the command line ----------------------------------------------------------------------------


def add_dry_run(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--dry-run", action="store_true", help=f"{what} (also --dry-run=client)")


# kubectl's spelling: --dry-run=client|server|none. pflag takes a value only after `=`, so
# `release --dry-run KEY` stays a flag and a key, which an optional argparse value would eat.
DRY_RUN_VALUES = {"client": True, "server": True, "true": True, "none": False, "false": False}


def kubectl_dry_run(argv: Sequence[str], top: argparse.ArgumentParser) -> list[str]:
    """`argv` with `--dry-run=<value>` as the plain flag, or without it for `none`."""
    out: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":  # what follows is positional
            return out + list(argv[index:])
        flag, eq, value = arg.partition("=")
        if flag == "--dry-run" and eq:
            if value not in DRY_RUN_VALUES:
                top.error(f'invalid --dry-run "{value}": want none, client or server')
            if DRY_RUN_VALUES[value]:
                out.append(flag)
        else:
            out.append(arg)
    return out


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--kubeconfig", help="kubeconfig path(s); default $KUBECONFIG")
    common.add_argument("--context", help="the kubeconfig context to use")
    scope = common.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        help="only entries of pods in this namespace (default: the context's for reservations; "
        "every namespace for release and unpin unless given)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="entries of every namespace"
    )
    common.add_argument("-o", "--output", choices=OUTPUTS, help="output format (default table)")
    common.add_argument("--pool", help="only this pool")

    top = argparse.ArgumentParser(
        prog="kubectl cocoon",
        description="Inspect and edit cocoon-webhook's VM reservations (affinity ConfigMaps).",
        parents=[common],
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    res = commands.add_parser(
        "reservations", aliases=["res"], parents=[common], help="one row per entry"
    )
    res.add_argument("--node", help="only entries pinned to this node")
    res.add_argument("--state", choices=[s.value for s in operator.State])
    res.set_defaults(run=cmd_reservations)

    pools = commands.add_parser(
        "pools", parents=[common], help="per pool: ConfigMap fill and per-node VMs"
    )
    pools.set_defaults(run=cmd_pools)

    release = commands.add_parser(
        "release", parents=[common], help="remove one entry (compare-and-delete)"
    )
    release.add_argument("key", nargs="?", help="the entry's key, e.g. team-a.demo.0")
    release.add_argument("--vm", help="the entry holding this VM name instead of a key")
    release.add_argument("--configmap", help="where the same entry sits in two ConfigMaps")
    release.add_argument("--force", action="store_true", help="even if its pod is live")
    add_dry_run(release, "show it, change nothing")
    release.set_defaults(run=cmd_release)

    unpin = commands.add_parser(
        "unpin", parents=[common], help="clear a retired node from its entries"
    )
    unpin.add_argument("--node", required=True, help="the node to clear")
    add_dry_run(unpin, "show what changes, change nothing")
    unpin.set_defaults(run=cmd_unpin)

    sweep_cmd = commands.add_parser(
        "sweep", parents=[common], help="one reaper sweep from here, printing its summary"
    )
    add_dry_run(sweep_cmd, "judge, write nothing")
    sweep_cmd.set_defaults(run=cmd_sweep)
    return top


class _StderrFormatter(logging.Formatter):
    """`warning: <msg> (<key>=<value>, ...)`: what the reaper and the ConfigMap code log when a
    pool or namespace fails, said on the operator's terminal instead of as JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        context = ", ".join(
            f"{key}={' '.join(str(value).split())}" for key, value in context_of(record).items()
        )
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        return f"{line} ({context})" if context else line


@contextlib.contextmanager
def _logging_to(err: TextIO) -> Iterator[None]:
    """Warnings and errors of the shared code to `err` (the summary says the rest), for one run:
    tests call main() in a process whose logging is set up otherwise."""
    logger = logging.getLogger(ROOT_LOGGER)
    saved = logger.level, logger.propagate, logger.handlers
    handler = logging.StreamHandler(err)
    handler.setFormatter(_StderrFormatter())
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.handlers = [handler]
    try:
        yield
    finally:
        logger.level, logger.propagate, logger.handlers = saved


def main(
    argv: Sequence[str] | None = None,
    *,
    kube: KubeApi | None = None,
    env: dict[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    env = dict(os.environ) if env is None else env
    top = parser()
    args = top.parse_args(kubectl_dry_run(sys.argv[1:] if argv is None else argv, top))
    with _logging_to(err):
        return _run(args, kube, env, out, err, now)


def _run(
    args: argparse.Namespace,
    kube: KubeApi | None,
    env: dict[str, str],
    out: TextIO,
    err: TextIO,
    now: Callable[[], datetime],
) -> int:
    kubeconfig = getattr(args, "kubeconfig", None) or env.get("KUBECONFIG") or None
    context = getattr(args, "context", None)
    try:
        settings = Settings.from_env(env)
        if getattr(args, "all_namespaces", False):
            namespace: str | None = None
        else:
            namespace = getattr(args, "namespace", None) or context_namespace(kubeconfig, context)
        if kube is None:
            client = ClientKubeApi(kubeconfig, context)
            # Now, not on the first call: a sweep would retry a bad kubeconfig as an outage.
            client.load()
            kube = client
        ctx = Context(
            kube=kube,
            settings=settings,
            namespace=namespace,
            output=getattr(args, "output", "table"),
            out=out,
            err=err,
            now=now,
            scope=getattr(args, "namespace", None) or None,
        )
        for name in ("pool", "key", "vm", "node", "state"):
            setattr(args, name, getattr(args, name, None))
        code: int = args.run(ctx, args)
    except (CliError, KubeError, ConfigError) as exc:
        err.write(f"error: {exc}\n")
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())

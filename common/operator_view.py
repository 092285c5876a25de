"""kubectl cocoon's output: kubectl-style tables, and documents for `-o json|yaml`. Pure.

Tables follow kubectl's printer: upper-case headers, columns padded to their widest cell and
three spaces apart, `<none>` for an empty cell, ages in kubectl's short form (5m, 3h2m, 4d).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import yaml

from common.decisions.operator import PoolSummary, Row, State
from common.reservation import YEAR_ONE, format_time

NONE = "<none>"
_GAP = "   "


def human_duration(delta: timedelta) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, as kubectl's AGE column shows it."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def table(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Aligned columns; an empty cell prints `<none>`. Ends with a newline."""
    lines = [list(headers), *[[c or NONE for c in row] for row in cells]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "".join(
        _GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in lines
    )


def _age(moment: datetime, now: datetime) -> str:
    return "<unknown>" if moment == YEAR_ONE else human_duration(now - moment)


def state_text(row: Row, now: datetime) -> str:
    """The STATE column: `missing 12m` says since when the reaper has seen the pod gone."""
    entry = row.entry
    if row.state is State.MISSING and entry is not None and entry.missing_since is not None:
        text = f"missing {human_duration(now - entry.missing_since)}"
        return text + " (due)" if row.due else text
    if row.state is State.MALFORMED and row.due:
        return "malformed (due)"
    return str(row.state)


def reservations_table(found: Sequence[Row], now: datetime, *, wide: bool = False) -> str:
    headers = ["POOL", "KEY", "VM", "POD", "NODE", "AGE", "STATE"]
    if wide:
        headers += ["SLOT", "CONFIGMAP", "CLAIMED", "REASON"]
    cells = []
    for row in found:
        entry = row.entry
        line = [
            row.pool,
            row.key,
            entry.vm_name if entry else "",
            f"{entry.namespace}/{entry.pod}" if entry else "",
            entry.node if entry else "",
            _age(entry.updated_at, now) if entry else "",
            state_text(row, now),
        ]
        if wide:
            claimed = (
                format_time(entry.updated_at) if entry and entry.updated_at != YEAR_ONE else ""
            )
            line += [
                str(entry.slot) if entry and entry.deployment else "",
                row.configmap,
                claimed,
                row.reason,
            ]
        cells.append(line)
    return table(headers, cells)


def reservation_item(row: Row) -> dict[str, Any]:
    entry = row.entry
    item: dict[str, Any] = {
        "pool": row.pool,
        "configMap": row.configmap,
        "key": row.key,
        "state": str(row.state),
        "due": row.due,
    }
    if entry is None:
        item["reason"] = row.reason
        item["value"] = row.value
        return item
    item.update(
        namespace=entry.namespace,
        deployment=entry.deployment,
        slot=entry.slot,
        vmName=entry.vm_name,
        pod=entry.pod,
        node=entry.node,
        updatedAt=format_time(entry.updated_at),
    )
    if entry.missing_since is not None:
        item["missingSince"] = format_time(entry.missing_since)
    return item


def pools_table(summaries: Sequence[PoolSummary]) -> str:
    """Two tables: each ConfigMap's fill, then each node's VMs and state (`wide` adds nothing)."""
    headers = ["POOL", "CONFIGMAP", "ENTRIES", "BYTES", "LIMIT%"]
    fills = [
        [s.pool, cm.name, str(cm.entries), str(cm.bytes), f"{cm.percent:.1f}%"]
        for s in summaries
        for cm in s.configmaps
    ]
    node_headers = ["POOL", "NODE", "VMS", "STATUS"]
    nodes = [[s.pool, n.name, str(n.vms), n.status] for s in summaries for n in s.nodes]
    text = table(headers, fills) if fills else "No affinity ConfigMaps found.\n"
    return text + "\n" + (table(node_headers, nodes) if nodes else "No pool nodes found.\n")


def pool_item(summary: PoolSummary) -> dict[str, Any]:
    return {
        "pool": summary.pool,
        "entries": summary.entries,
        "configMaps": [
            {
                "name": cm.name,
                "entries": cm.entries,
                "bytes": cm.bytes,
                "percentOfLimit": round(cm.percent, 2),
            }
            for cm in summary.configmaps
        ],
        "nodes": [
            {
                "name": n.name,
                "vms": n.vms,
                "inPool": n.in_pool,
                "ready": n.ready == "True",
                "cordoned": n.cordoned,
            }
            for n in summary.nodes
        ],
    }


def document(items: list[dict[str, Any]], output: str) -> str:
    """`-o json` or `-o yaml` of a list, as `{"items": [...]}` so tools can pipe it to jq."""
    return render({"items": items}, output)


def render(doc: dict[str, Any], output: str) -> str:
    """One object as `json` (indented) or `yaml`."""
    if output == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

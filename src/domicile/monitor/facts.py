"""The fact row the monitor stores for every entry (state.py, `facts`).

Cross-checks, thresholds and reports read these columns rather than the entries.
"""

from __future__ import annotations

from typing import Any

import orjson

Fact = tuple[Any, ...]


def fact_row(origin: str, index: int, entry: dict[str, Any]) -> Fact:
    """The fact columns of one decoded entry (FACT_COLUMNS, in order)."""
    data = entry.get("input") or {}
    principal = data.get("principal") or {}
    context = data.get("context") or {}
    resource = data.get("resource") or {}
    detail = _detail(entry, resource)
    return (
        origin,
        index,
        entry["time"],
        entry["kind"],
        entry.get("result"),
        entry.get("action") or entry.get("alert"),
        principal.get("id") or entry.get("principal_id"),
        principal.get("entity"),
        context.get("purpose"),
        entry.get("decision_id"),
        entry.get("subject_ref") or resource.get("subject_ref"),
        orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode() if detail else None,
    )


def _detail(entry: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    kind = entry["kind"]
    if kind == "decision":
        return {"fields": resource.get("fields") or [], "allowed": entry.get("allowed_fields")}
    if kind in {"transfer", "relocation", "migration-batch", "grant-step"}:
        return {k: v for k, v in entry.items() if k not in {"v", "kind", "region", "time"}}
    return {}

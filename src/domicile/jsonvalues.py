"""The JSON values the canonical forms accept (shared by the ledger's entries and the
catalog's stored values)."""

from __future__ import annotations

from typing import Any


def is_json(value: Any) -> bool:
    """True if `value` holds only JSON types: dicts with str keys, lists, str, int, bool
    and None (enum members count as their value); no floats, tuples or anything else."""
    # Hot path (every entry written or read): iterative, exact type tests first.
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            extend(item.values())
        elif kind is list:
            extend(item)
        elif not isinstance(item, str | int):
            return False
    return True

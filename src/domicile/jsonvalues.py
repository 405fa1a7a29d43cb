"""Checks on JSON values parsed by orjson (shared by the ledger's and the catalog's
canonical forms, which refuse floats)."""

from __future__ import annotations

from typing import Any


def no_floats(value: Any) -> bool:
    """True if a value parsed by orjson holds no float anywhere."""
    # orjson yields only dict (str keys), list, str, int, float, bool and None: a float
    # is the one value the canonical forms refuse. Iterative: this runs on every entry.
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is float:
            return False
    return True

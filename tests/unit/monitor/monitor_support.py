"""Test helper: a replayer that knows every policy version a log recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from domicile.catalog.catalog import load_catalog
from domicile.monitor.replay import Replayer
from domicile.residency.topology import load_topology


def replayer_for(entries: Iterable[Mapping[str, Any]]) -> Replayer:
    """A replayer on the default topology and catalog, fed the entries' policy versions."""
    replayer = Replayer(load_topology(), load_catalog())
    for entry in entries:
        if entry["kind"] == "policy-version":
            replayer.add_version(entry)
    return replayer

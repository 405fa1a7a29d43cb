"""Pure rendering for both consoles: the Jinja2 templates and server-side SVG diagrams.

The gateway's console and the monitor's console both render through this module, so
it imports nothing but Jinja2 and the pure ledger code (import-linter contract
`console-pure`): the monitor may use it without reaching the gateway's layers.
Values arrive as plain data; every text put into SVG or HTML is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

ALLOWED = "#2e7d32"
DENIED = "#c62828"


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The template environment (built on first use, never at import)."""
    env = Environment(
        loader=PackageLoader("domicile.console", "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = thousands
    return env


def render(template: str, **values: Any) -> str:
    """Render one template with `values`."""
    return environment().get_template(template).render(**values)


@lru_cache(maxsize=1)
def stylesheet() -> bytes:
    """The console's one stylesheet."""
    return resources.files("domicile.console").joinpath("static", "console.css").read_bytes()


def thousands(value: object) -> str:
    """An integer with thousands separators (`12,345`); other values as they are."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class RegionBox:
    """One region on the overview diagram."""

    name: str
    jurisdiction: str
    location: str
    subjects: int
    outside: int  # subjects stored here whose home is elsewhere (should be 0)


def region_diagram(regions: Sequence[RegionBox]) -> Markup:
    """An SVG of the regions side by side, each circle's area proportional to its subjects."""
    width, height = max(1, len(regions)) * 200, 230
    biggest = max([r.subjects for r in regions] + [1])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="diagram"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' aria-label="regions and their subjects">'
    ]
    for i, region in enumerate(regions):
        cx = 100 + i * 200
        radius = 12 + 58 * math.sqrt(region.subjects / biggest)
        colour = DENIED if region.outside else "#1565c0"
        parts.append(
            f'<g class="region" data-region="{escape(region.name)}">'
            f'<circle cx="{cx}" cy="95" r="{radius:.1f}" fill="{colour}" fill-opacity="0.2"'
            f' stroke="{colour}" stroke-width="2"/>'
            f'<text x="{cx}" y="100" text-anchor="middle" class="count">'
            f"{thousands(region.subjects)}</text>"
            f'<text x="{cx}" y="185" text-anchor="middle" class="name">{escape(region.name)}</text>'
            f'<text x="{cx}" y="203" text-anchor="middle" class="sub">'
            f"{escape(region.jurisdiction)} · {escape(region.location)}</text>"
            "</g>"
        )
    parts.append("</svg>")
    # Every interpolated text above went through `escape`; numbers are formatted here.
    return Markup("".join(parts))  # noqa: S704


@dataclass(frozen=True)
class Flow:
    """Transfers from one region to one destination country with one result."""

    origin: str
    destination: str
    result: str  # allow | deny
    count: int


def flow_diagram(flows: Sequence[Flow]) -> Markup:
    """An SVG flow diagram: origin regions on the left, destination countries on the right,
    one band per (origin, destination, result), its width proportional to the count."""
    origins = sorted({f.origin for f in flows})
    destinations = sorted({f.destination for f in flows})
    rows = max(len(origins), len(destinations), 1)
    height, width = 60 + rows * 60, 640
    biggest = max([f.count for f in flows] + [1])
    left = {name: 50 + i * 60 for i, name in enumerate(origins)}
    right = {name: 50 + i * 60 for i, name in enumerate(destinations)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="diagram"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' aria-label="cross-border flows">'
    ]
    for flow in sorted(flows, key=lambda f: (f.origin, f.destination, f.result)):
        y1 = left[flow.origin] + (-6 if flow.result == "allow" else 6)
        y2 = right[flow.destination] + (-6 if flow.result == "allow" else 6)
        stroke = 2 + 14 * flow.count / biggest
        colour = ALLOWED if flow.result == "allow" else DENIED
        label = f"{flow.origin} → {flow.destination}: {flow.count} {flow.result}"
        parts.append(
            f'<path class="flow {escape(flow.result)}" d="M150,{y1} C320,{y1} 320,{y2} 490,{y2}"'
            f' stroke="{colour}" stroke-width="{stroke:.1f}" stroke-opacity="0.6" fill="none">'
            f"<title>{escape(label)}</title></path>"
        )
    for name, y in left.items():
        parts.append(
            f'<rect x="40" y="{y - 16}" width="110" height="32" rx="4" class="node"/>'
            f'<text x="95" y="{y + 5}" text-anchor="middle">{escape(name)}</text>'
        )
    for name, y in right.items():
        parts.append(
            f'<rect x="490" y="{y - 16}" width="110" height="32" rx="4" class="node"/>'
            f'<text x="545" y="{y + 5}" text-anchor="middle">{escape(name)}</text>'
        )
    if not flows:
        parts.append(
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">'
            "no cross-border transfers in this period</text>"
        )
    parts.append("</svg>")
    # Every interpolated text above went through `escape`; numbers are formatted here.
    return Markup("".join(parts))  # noqa: S704


def pretty_json(value: Mapping[str, Any] | Sequence[Any]) -> str:
    """Indented JSON for people (keys sorted, as in the ledger)."""
    return json.dumps(value, indent=2, sort_keys=True)

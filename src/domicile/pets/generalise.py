"""Generalisation: replace a value by a coarser one that many people share.

* date → year (an integer);
* IP address → network prefix: ``/24`` for IPv4, ``/48`` for IPv6 (the sizes usually
  allocated to one site), written in CIDR form with the host bits cleared;
* phone number (E.164) → its country calling code (ITU-T E.164 Annex), e.g. ``+353``;
* coordinates → a grid cell: the south-west corner of a square of ``grid_degrees``
  (default 1°, about 111 km north-south), or a country when a `CountryLocator` is given.

Without a geographic database, coordinates cannot be mapped to countries exactly, and a
guess (nearest capital, bounding boxes) would be wrong near borders in a way that leaks
which side of a border someone is. So `generalise:country` on coordinates gives the
country only from a locator the deployment supplies, and otherwise a grid cell, which is
coarse, exact and documented. Every function takes a normalised value (the catalog's
validators made it) and raises InvalidFieldValue, naming the field only, for anything
else.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Protocol

from domicile.catalog.catalog import JsonValue
from domicile.errors import ConfigError, InvalidFieldValue

__all__ = [
    "DEFAULT_GRID_DEGREES",
    "IPV4_PREFIX",
    "IPV6_PREFIX",
    "CountryLocator",
    "calling_code",
    "generalise_coordinates",
    "generalise_ip",
    "generalise_year",
    "grid_cell",
    "verify_grid_degrees",
]

DEFAULT_GRID_DEGREES = 1.0
"""Default grid cell side, in degrees."""
MIN_GRID_DEGREES = 0.5
"""Smallest grid cell allowed: finer cells stop being `country`-like coarse."""
IPV4_PREFIX = 24
"""Prefix length an IPv4 address is cut to."""
IPV6_PREFIX = 48
"""Prefix length an IPv6 address is cut to."""

# E.164 country codes are prefix-free: 1 and 7 are one digit, these are two, and every
# other code is three digits (ITU-T E.164 Annex to Operational Bulletin, "list of ITU-T
# Recommendation E.164 assigned country codes").
_ONE_DIGIT = frozenset({"1", "7"})
# fmt: off
_TWO_DIGITS = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
    "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61",
    "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94",
    "95", "98",
})
# fmt: on
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class CountryLocator(Protocol):
    """Maps a point to the ISO 3166-1 alpha-2 country it lies in (a geo database)."""

    def country_at(self, lat: float, lon: float) -> str | None:
        """Return the country at the point, or None if it lies in none (sea, unknown)."""


def _invalid(field: str, rule: str) -> InvalidFieldValue:
    return InvalidFieldValue(f"field `{field}` {rule}")


def generalise_year(field: str, value: JsonValue) -> int:
    """Return the year of an ISO 8601 date `YYYY-MM-DD`."""
    parsed: datetime.date | None = None
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            parsed = datetime.date.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None:
        raise _invalid(field, "is not a date (YYYY-MM-DD)")
    return parsed.year


def generalise_ip(field: str, value: JsonValue) -> str:
    """Return the /24 (IPv4) or /48 (IPv6) network of an address, in CIDR form."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    if isinstance(value, str) and "%" not in value and "/" not in value:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            address = None  # the exception quotes the address: do not chain it
    if address is None:
        raise _invalid(field, "is not an IPv4 or IPv6 address")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 host; cut it as one
    length = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network((address, length), strict=False))


def calling_code(field: str, value: JsonValue) -> str:
    """Return the E.164 country calling code of a phone number, e.g. `+353`."""
    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise _invalid(field, "is not an E.164 phone number")
    digits = value[1:]
    if digits[0] in _ONE_DIGIT:
        return "+" + digits[:1]
    if digits[:2] in _TWO_DIGITS:
        return "+" + digits[:2]
    return "+" + digits[:3]


def verify_grid_degrees(degrees: float) -> None:
    """Raise ConfigError unless `degrees` is in 0.5..90 and divides 180 evenly."""
    ok = isinstance(degrees, int | float) and MIN_GRID_DEGREES <= degrees <= 90
    if ok:
        cells = 180 / degrees
        ok = math.isclose(cells, round(cells), abs_tol=1e-9)
    if not ok:
        raise ConfigError(
            f"grid cell size `{degrees}` must be between {MIN_GRID_DEGREES} and 90 degrees "
            "and divide 180 evenly"
        )


def _coordinates(field: str, value: JsonValue) -> tuple[float, float]:
    if isinstance(value, Mapping) and set(value) == {"lat", "lon"}:
        lat, lon = value["lat"], value["lon"]
        if (
            isinstance(lat, int | float)
            and isinstance(lon, int | float)
            and not isinstance(lat, bool)
            and not isinstance(lon, bool)
            and math.isfinite(lat)
            and math.isfinite(lon)
            and -90 <= lat <= 90
            and -180 <= lon <= 180
        ):
            return float(lat), float(lon)
    raise _invalid(field, 'is not {"lat": number, "lon": number}')


def grid_cell(field: str, value: JsonValue, degrees: float = DEFAULT_GRID_DEGREES) -> JsonValue:
    """Return the cell holding a point: `{"grid_deg", "lat", "lon"}` of its south-west corner."""
    verify_grid_degrees(degrees)
    lat, lon = _coordinates(field, value)
    rows = round(180 / degrees)
    columns = round(360 / degrees)
    # Clamp the north pole into the top row and wrap 180°E onto 180°W: both are edges
    # of existing cells, not cells of their own.
    row = min(math.floor((lat + 90) / degrees), rows - 1)
    column = math.floor((lon + 180) / degrees) % columns
    return {
        "grid_deg": float(degrees),
        "lat": round(row * degrees - 90, 6),
        "lon": round(column * degrees - 180, 6),
    }


def generalise_coordinates(
    field: str,
    value: JsonValue,
    *,
    degrees: float = DEFAULT_GRID_DEGREES,
    locator: CountryLocator | None = None,
) -> JsonValue:
    """Return the country of a point if `locator` knows it, else its grid cell."""
    if locator is not None:
        lat, lon = _coordinates(field, value)
        country = locator.country_at(lat, lon)
        if country is not None:
            return country
    return grid_cell(field, value, degrees)

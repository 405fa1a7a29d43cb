"""The dispatcher: a catalog transform name, a field type and a value in, what leaves out.

Names are the catalog's (`TRANSFORMS` in ``domicile.catalog.catalog``) plus
``tokenise``, which only a transfer agreement may choose (it is reversible in region).
`suppress` gives None, which `transform_values` turns into "the field is not sent".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from domicile.catalog.catalog import TRANSFORMS, JsonValue
from domicile.errors import ConfigError
from domicile.pets.generalise import (
    DEFAULT_GRID_DEGREES,
    CountryLocator,
    calling_code,
    generalise_coordinates,
    generalise_ip,
    generalise_year,
    verify_grid_degrees,
)
from domicile.pets.keyed import Pseudonymiser, encode_pseudonyms, pseudonymise, tokenise
from domicile.pets.keys import PetKeys

__all__ = [
    "FITS",
    "CanonicalTransform",
    "FieldPlan",
    "IpCountryLocator",
    "TransformOptions",
    "apply_transform",
    "transform_values",
    "verify_fits",
]

FITS: Mapping[str, frozenset[str] | None] = {**TRANSFORMS, "tokenise": None}
"""Every transform name the dispatcher knows, with the types it fits (None: every type)."""

_COARSE_IPV4 = 16  # without an IP → country source, a prefix coarser than generalise:prefix
_COARSE_IPV6 = 32


class IpCountryLocator(CountryLocator):
    """A geo database that also maps IP addresses to countries."""

    def country_of_ip(self, address: str) -> str | None:
        """Return the country an address is registered in, or None."""


@dataclass(frozen=True)
class TransformOptions:
    """Deployment choices for the generalising transforms."""

    grid_degrees: float = DEFAULT_GRID_DEGREES
    locator: CountryLocator | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Refuse a grid size that is too fine or does not tile the globe."""
        verify_grid_degrees(self.grid_degrees)


DEFAULT_OPTIONS = TransformOptions()


@dataclass(frozen=True)
class FieldPlan:
    """What happens to one field on its way out: its catalog type and transform."""

    field: str
    field_type: str
    transform: str


def verify_fits(transform: str, field_type: str, field_name: str = "") -> None:
    """Raise ConfigError unless `transform` is known and fits `field_type`."""
    where = f" of field `{field_name}`" if field_name else ""
    if transform not in FITS:
        raise ConfigError(f"unknown transform `{str(transform)[:64]}`{where}")
    fits = FITS[transform]
    if fits is not None and field_type not in fits:
        raise ConfigError(f"transform `{transform}` does not fit type `{field_type}`{where}")


def _ip_country(name: str, value: JsonValue, options: TransformOptions) -> JsonValue:
    locator = options.locator
    if isinstance(locator, IpCountryLocator) and isinstance(value, str):
        country = locator.country_of_ip(value)
        if country is not None:
            return country
    network = generalise_ip(name, value)
    coarse = _COARSE_IPV4 if ":" not in network else _COARSE_IPV6
    return str(ipaddress.ip_network(network).supernet(new_prefix=coarse))


def _generalise(
    transform: str, field_type: str, name: str, value: JsonValue, options: TransformOptions
) -> JsonValue:
    if transform == "generalise:year":
        return generalise_year(name, value)
    if field_type == "phone":  # prefix and country are both the calling code
        return calling_code(name, value)
    if transform == "generalise:prefix":
        return generalise_ip(name, value)
    if field_type == "coordinates":
        return generalise_coordinates(
            name, value, degrees=options.grid_degrees, locator=options.locator
        )
    if field_type == "ip_address":
        return _ip_country(name, value, options)
    return value  # a `country` value is already a country


def apply_transform(
    transform: str,
    field_type: str,
    value: JsonValue,
    keys: PetKeys,
    *,
    field: str,
    domain: str,
    options: TransformOptions = DEFAULT_OPTIONS,
) -> JsonValue:
    """Return `value` of `field` as it may leave its region; None means not sent."""
    verify_fits(transform, field_type, field)
    if transform == "keep":
        return value
    if transform == "suppress":
        return None
    if transform == "pseudonymise":
        return pseudonymise(field, value, keys.pseudonym_key(domain))
    if transform == "tokenise":
        return tokenise(field, value, keys, domain)
    return _generalise(transform, field_type, field, value, options)


def transform_values(
    plan: Mapping[str, FieldPlan],
    values: Mapping[str, JsonValue],
    keys: PetKeys,
    *,
    domain: str,
    options: TransformOptions = DEFAULT_OPTIONS,
) -> dict[str, JsonValue]:
    """Return every planned field transformed, suppressed ones left out.

    A value without a plan is never sent: the caller asked for a field the agreement
    does not cover, and leaving it out is the safe failure.
    """
    out: dict[str, JsonValue] = {}
    for name, value in values.items():
        rule = plan.get(name)
        if rule is None or rule.transform == "suppress":
            continue
        out[name] = apply_transform(
            rule.transform, rule.field_type, value, keys, field=name, domain=domain,
            options=options,
        )  # fmt: skip
    return out


class CanonicalTransform:
    """`transform_values` for many records whose values come as canonical JSON bytes.

    Built once per export: keys are derived and HMAC states keyed once, and a field sent
    pseudonymised is never decoded, because a pseudonym is an HMAC over exactly those
    bytes (`Catalog.encode` and `canonical_value` give the same ones). Other transforms
    decode with `decode` (the catalog's) and go through `apply_transform`. For every
    plan and record, ``apply({f: encode(f, v)})`` equals ``transform_values(plan, {f: v})``.
    """

    def __init__(
        self,
        plan: Mapping[str, FieldPlan],
        keys: PetKeys,
        *,
        domain: str,
        decode: Callable[[str, bytes], JsonValue],
        options: TransformOptions = DEFAULT_OPTIONS,
    ) -> None:
        """Prepare one step per planned field that is sent."""
        self._steps: dict[str, Callable[[bytes], JsonValue]] = {}
        self._pseudonymisers: dict[str, Pseudonymiser] = {}
        for name, rule in plan.items():
            verify_fits(rule.transform, rule.field_type, name)
            if rule.transform == "suppress":
                continue
            if rule.transform == "pseudonymise":
                self._pseudonymisers[name] = Pseudonymiser(keys.pseudonym_key(domain), name)
                continue

            def step(data: bytes, rule: FieldPlan = rule) -> JsonValue:
                value = decode(rule.field, data)
                return apply_transform(
                    rule.transform, rule.field_type, value, keys, field=rule.field,
                    domain=domain, options=options,
                )  # fmt: skip

            self._steps[name] = step

    def apply(self, canonical: Mapping[str, bytes]) -> dict[str, JsonValue]:
        """Return every planned field transformed; suppressed and unplanned ones left out."""
        return self.apply_many([canonical])[0]

    def apply_many(self, records: Sequence[Mapping[str, bytes]]) -> list[dict[str, JsonValue]]:
        """`apply` for each of `records`, with the pseudonyms of all of them encoded in one
        `encode_pseudonyms` pass (most of the cost of a pseudonym is its encoding when
        it is done a record at a time)."""
        outs: list[dict[str, JsonValue]] = []
        places: list[tuple[dict[str, JsonValue], str]] = []
        macs: list[bytes] = []
        pseudonymisers, steps = self._pseudonymisers, self._steps
        for canonical in records:
            out: dict[str, JsonValue] = {}
            for name, data in canonical.items():
                pseudonymiser = pseudonymisers.get(name)
                if pseudonymiser is not None:
                    places.append((out, name))
                    macs.append(pseudonymiser.mac(data))
                elif (step := steps.get(name)) is not None:
                    out[name] = step(data)
            outs.append(out)
        for (out, name), pseudonym in zip(places, encode_pseudonyms(macs), strict=True):
            out[name] = pseudonym
        return outs

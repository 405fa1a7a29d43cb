"""Synthetic people and principals for `domicile up --demo` and the README's tour.

Every value is made up from a seeded generator: names from short lists, emails at
example.org, phone numbers in the reserved-for-fiction style; nothing is real.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from domicile.gateway.pipeline import Gateway
from domicile.principals.store import Principal, PrincipalStore

# Weighted towards the arrangement of the design brief: many EEA people, some US, the rest.
DEMO_COUNTRIES = (
    "IE", "DE", "FR", "ES", "IT", "NL", "PL", "SE", "NO", "DK", "FI", "BE", "AT", "PT",
    "GB", "CH", "IS", "US", "US", "US", "CA", "BR", "MX", "JP", "SG", "IN", "AU", "ZA",
    "KR", "NG",
)  # fmt: skip
_FIRST = ("Aoife", "Lukas", "Chloé", "Mateo", "Giulia", "Sven", "Ingrid", "Maja", "Liam",
          "Noah", "Yuki", "Priya", "Ana", "Kwame", "Olivia", "Jonas", "Sofia", "Emil")  # fmt: skip
_LAST = ("Murphy", "Schmidt", "Dubois", "García", "Rossi", "Jansen", "Nowak", "Lindqvist",
         "Hansen", "Virtanen", "Smith", "Tanaka", "Sharma", "Silva", "Mensah", "Kim")  # fmt: skip

DEMO_PRINCIPALS = (
    ("svc-eu", "Domicile EU Operations Ltd", "IE", {"service"}),
    ("svc-us", "Domicile US Data Security Inc", "US", {"service"}),
    ("svc-sg", "Domicile Asia Pte Ltd", "SG", {"service"}),
)


def demo_person(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One synthetic person: (country, catalog fields)."""
    country = rng.choice(DEMO_COUNTRIES)
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    ascii_first = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode()
    handle = f"{ascii_first.lower()}.{rng.randrange(10**6):06d}"
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    return country, {
        "full_name": f"{first} {last}",
        "email": f"{handle}@example.org",
        "phone": f"+{rng.randrange(1, 99)}{rng.randrange(10**8, 10**9)}",
        "birth_date": born.isoformat(),
        "ip_address": f"192.0.2.{rng.randrange(1, 255)}",
        "display_name": first,
        "follower_count": rng.randrange(5000),
    }


def demo_people(count: int, seed: int = 2026) -> Iterator[tuple[str, dict[str, Any]]]:
    """`count` synthetic people, the same for the same seed."""
    rng = random.Random(seed)
    for _ in range(count):
        yield demo_person(rng)


def ensure_demo_principals(store: PrincipalStore) -> dict[str, str]:
    """Create the demo principals that do not exist yet; return their new tokens."""
    existing = {p.id for p in store.list()}
    tokens: dict[str, str] = {}
    for principal_id, entity, country, roles in DEMO_PRINCIPALS:
        if principal_id not in existing:
            tokens[principal_id] = store.add(principal_id, entity, country, set(roles))
    return tokens


def seed_subjects(gateway: Gateway, principal: Principal, count: int, batch: int = 500) -> int:
    """Register `count` synthetic subjects through the gateway; return how many."""
    people = list(demo_people(count))
    for start in range(0, len(people), batch):
        gateway.register_many(principal, people[start : start + batch])
    return len(people)

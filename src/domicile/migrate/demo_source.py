"""A synthetic legacy store: plaintext "Singapore" or "US" user tables, mostly EU users.

Values come from `domicile.demo` (made up, seeded); about 3% of the rows are broken on
purpose (no country, an unknown country, a malformed email or date) so the quarantine
report has something to show.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from domicile.demo import demo_person
from domicile.errors import InvalidInput
from domicile.storage.database import open_database
from domicile.storage.url import SqliteUrl, parse_storage_url

STORES = {"singapore": ("users_sg", 7), "us": ("users_us", 11)}
_EU = ("IE", "DE", "FR", "ES", "IT", "NL", "PL", "SE", "NO", "DK", "FI", "BE", "AT", "PT")
_OTHER = ("US", "SG", "JP", "BR")
_COLUMNS = ("legacy_id", "country", "name", "email", "phone", "birthday", "last_ip",
            "nickname", "followers")  # fmt: skip

MAPPING_TEMPLATE = """# Mapping of the demo legacy store `{table}` (domicile migrate demo-source)
table = "{table}"
id_column = "legacy_id"
country_column = "country"
on_moved = "delete"

[columns]
name = "full_name"
email = "email"
phone = "phone"
birthday = "birth_date"
last_ip = "ip_address"
nickname = "display_name"
followers = "follower_count"
"""


def _row(rng: random.Random, legacy_id: int) -> tuple[Any, ...]:
    _, person = demo_person(rng)
    country: str | None = rng.choice(_EU) if rng.random() < 0.92 else rng.choice(_OTHER)
    fault = rng.random()
    if fault < 0.01:
        country = None
    elif fault < 0.015:
        country = "XX"
    elif fault < 0.022:
        person["email"] = "not-an-email"
    elif fault < 0.03:
        person["birth_date"] = "31/02/1990"
    return (legacy_id, country, person["full_name"], person["email"], person["phone"],
            person["birth_date"], person["ip_address"], person["display_name"],
            person["follower_count"])  # fmt: skip


def demo_rows(count: int, seed: int) -> Iterator[tuple[Any, ...]]:
    """`count` legacy rows, the same for the same seed."""
    rng = random.Random(seed)
    for legacy_id in range(1, count + 1):
        yield _row(rng, legacy_id)


def create_demo_source(
    url: str, rows: int, store: str = "singapore", seed: int | None = None
) -> str:
    """Create (or replace) a demo legacy table at `url`; return its mapping TOML."""
    if store not in STORES:
        raise InvalidInput(f"demo store `{store}` is not one of {sorted(STORES)}")
    table, default_seed = STORES[store]
    parsed = parse_storage_url(url)
    db = open_database(parsed)
    key_type = "INTEGER" if isinstance(parsed, SqliteUrl) else "BIGINT"
    try:
        with db.transaction() as tx:
            tx.execute(f"DROP TABLE IF EXISTS {table}")
            tx.execute(
                f"CREATE TABLE {table} (legacy_id {key_type} PRIMARY KEY, country TEXT,"
                " name TEXT, email TEXT, phone TEXT, birthday TEXT, last_ip TEXT,"
                f" nickname TEXT, followers {key_type}, migrated_at TEXT)"
            )
        insert = f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES ({', '.join(['?'] * 9)})"
        chunk: list[tuple[Any, ...]] = []
        for row in demo_rows(rows, default_seed if seed is None else seed):
            chunk.append(row)
            if len(chunk) == 20_000:
                _insert(db, insert, chunk)
        _insert(db, insert, chunk)
    finally:
        db.close()
    return MAPPING_TEMPLATE.format(table=table)


def _insert(db: Any, statement: str, chunk: list[tuple[Any, ...]]) -> None:
    if chunk:
        with db.transaction() as tx:
            tx.executemany(statement, chunk)
        chunk.clear()

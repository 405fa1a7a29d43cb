"""The runtime's databases: which there are, and how a PostgreSQL deployment sizes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings
from domicile.storage.postgres import PostgresDatabase


def test_every_store_is_listed_once_by_what_it_holds(runtime: Runtime) -> None:
    stores = runtime.stores()
    regions = sorted(runtime.topology.regions)
    expected = {"control", "thresholds"}
    expected |= {f"{r} vault" for r in regions} | {f"{r} log" for r in regions}
    assert set(stores) == expected
    assert len({id(db) for db in stores.values()}) == len(stores)  # each opened once


@pytest.mark.postgres
def test_the_storage_url_sizes_the_pool_of_every_schema(
    tmp_path: Path, pg_dsn: str, pg_prefix: str
) -> None:
    """`pool_size` bounds the connections a gateway holds per schema, which an operator
    needs to fit gateways × schemas × pool size under the server's max_connections."""
    url = f"{pg_dsn}?schema={pg_prefix}&pool_size=3"
    runtime = open_runtime(Settings(data_dir=tmp_path / "data", storage_url=url))
    try:
        for name, db in runtime.stores().items():
            assert isinstance(db, PostgresDatabase), name
            assert db.url.pool_size == 3, name
            assert db.pool_max_size == 3, name
    finally:
        runtime.close()

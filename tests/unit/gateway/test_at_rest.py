"""What is at rest: no plaintext anywhere, shredded subjects unreadable in old backups."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from domicile.errors import IntegrityError, KeyDestroyed
from domicile.keys.custodian import Authorization
from domicile.keys.envelope import field_aad, open_sealed
from domicile.runtime import Runtime
from domicile.settings import Settings
from domicile.storage.database import SqliteDatabase
from domicile.storage.url import SqliteUrl
from domicile.vault.store import Vault

MARKERS = {
    "full_name": "Zebulon Quartermaine-Xylo",
    "email": "zq.marker.7731@example.org",
    "phone": "+35361998877665",
    "bio": "marker-bio-k8s7d6f5g4h3",
    "iban": "GB82WEST12345698765432",
}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _needles() -> list[bytes]:
    out = []
    for value in MARKERS.values():
        raw = value.encode()
        out += [raw, raw.hex().encode(), value.encode("utf-16-le")]
    return out


def _pg_dump_text(dsn: str, prefix: str) -> str:
    chunks = []
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema LIKE %s",
            (prefix + "%",),
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t').fetchall()
            chunks += [r[0] for r in rows]
    return "\n".join(chunks)


def test_no_plaintext_at_rest(
    api: TestClient, tokens: dict[str, str], settings: Settings, request: pytest.FixtureRequest
) -> None:
    svc = h(tokens["svc"])
    for country in ("IE", "US", "SG", "NO"):
        response = api.post(
            "/v1/subjects", json={"country": country, "fields": MARKERS}, headers=svc
        )
        assert response.status_code == 201
    needles = _needles()
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        hits = [n for n in needles if n in data]
        assert not hits, f"plaintext in {path.relative_to(settings.data_dir)}"
    if settings.storage_url:
        dump = _pg_dump_text(
            request.getfixturevalue("pg_dsn"), request.getfixturevalue("pg_prefix")
        )
        assert dump  # the scan saw the tables
        for needle in needles:
            assert needle.decode("latin-1") not in dump


@pytest.mark.parametrize("backend", ["sqlite"])
def test_erasure_makes_an_old_backup_unreadable(
    api: TestClient, tokens: dict[str, str], settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    svc = h(tokens["svc"])
    sid = api.post("/v1/subjects", json={"country": "IE", "fields": MARKERS}, headers=svc).json()[
        "id"
    ]
    vault_file = settings.data_dir / "regions" / "eu-ie" / "vault.db"
    runtime.gateway.regions["eu-ie"].vault.db.checkpoint()  # type: ignore[attr-defined]
    backup = tmp_path / "backup.db"
    shutil.copy(vault_file, backup)
    assert api.delete(f"/v1/subjects/{sid}", headers=svc).status_code == 204

    old = Vault("eu-ie", SqliteDatabase(SqliteUrl(backup)))
    record = old.fetch(sid)  # the backup still has the ciphertext …
    assert record.fields
    custodian = runtime.gateway.regions["eu-ie"].custodian
    with pytest.raises(KeyDestroyed):  # … but its key is gone for good
        custodian.unwrap_data_key(sid, Authorization("test", "restore", 0))
    old.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_ciphertext_swapped_between_subjects_is_detected(
    api: TestClient, tokens: dict[str, str], runtime: Runtime
) -> None:
    svc = h(tokens["svc"])
    a = api.post("/v1/subjects", json={"country": "IE", "fields": MARKERS}, headers=svc).json()
    b = api.post(
        "/v1/subjects", json={"country": "IE", "fields": {"email": "b@example.org"}}, headers=svc
    ).json()
    vault = runtime.gateway.regions["eu-ie"].vault
    stolen = vault.fetch(a["id"], ["email"]).fields["email"]
    vault.update(b["id"], {"email": stolen})
    response = api.get(f"/v1/subjects/{b['id']}?purpose=service&fields=email", headers=svc)
    assert response.status_code == 500
    assert MARKERS["email"] not in response.text
    key = runtime.gateway.regions["eu-ie"].custodian.unwrap_data_key(
        b["id"], Authorization("t", "t", 0)
    )
    with pytest.raises(IntegrityError):
        open_sealed(key, stolen, field_aad(b["id"], "eu-ie", "email"))

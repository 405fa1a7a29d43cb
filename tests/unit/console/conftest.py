"""The console's unit tests share one small world: a runtime, principals, subjects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import PRINCIPALS, SUBJECTS, World
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.demo import seed_subjects
from domicile.runtime import open_runtime
from domicile.settings import Settings


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("console")) / "data")
    runtime = open_runtime(settings)
    tokens = {pid: runtime.principals.add(pid, e, c, r) for pid, (e, c, r) in PRINCIPALS.items()}
    seed_subjects(runtime.gateway, runtime.principals.get("svc-eu"), SUBJECTS)
    app = create_app(settings, runtime)
    with TestClient(app, raise_server_exceptions=False) as api:
        svc = {"Authorization": f"Bearer {tokens['svc-eu']}"}
        made = api.post(
            "/v1/subjects",
            json={"country": "IE", "fields": {"email": "console.person@example.org"}},
            headers=svc,
        )
        subject = made.json()["id"]
        for _ in range(60):  # more decisions than one console page shows
            api.get(f"/v1/subjects/{subject}?fields=display_name&purpose=support", headers=svc)
        yield World(app, runtime, tokens, subject)
    runtime.close()

"""First start of the embedded default: the admin token file and the demo data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from domicile import keyfiles
from domicile.demo import ensure_demo_principals, seed_subjects
from domicile.errors import Conflict, PrincipalNotFound
from domicile.runtime import Runtime

ADMIN_ID = "admin"


def ensure_admin(runtime: Runtime) -> Path:
    """Create the `admin` principal on first start and write its token to DIR/admin.token."""
    path = runtime.settings.data_dir / "admin.token"
    try:
        runtime.principals.get(ADMIN_ID)
        if path.exists():
            return path
        token = runtime.principals.issue_token(ADMIN_ID)
    except PrincipalNotFound:
        try:
            token = runtime.principals.add(ADMIN_ID, "operator", "IE", {"admin"})
        except Conflict:  # made just now by a process starting beside this one
            token = runtime.principals.issue_token(ADMIN_ID)
    keyfiles.replace(path, (token + "\n").encode())  # a reader sees one whole token
    return path


def seed_demo(runtime: Runtime, subjects: int, *, echo: Callable[[str], None]) -> None:
    """Create demo principals (tokens printed and saved) and synthetic subjects."""
    tokens = ensure_demo_principals(runtime.principals)
    folder = runtime.settings.data_dir / "demo-tokens"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for principal_id, token in tokens.items():
        keyfiles.replace(folder / f"{principal_id}.token", (token + "\n").encode())
        echo(f"demo principal {principal_id}: {token}")
    if sum(runtime.directory.counts().values()) == 0 and subjects > 0:
        service = runtime.principals.get("svc-eu")
        count = seed_subjects(runtime.gateway, service, subjects)
        echo(f"seeded {count} synthetic subjects")
    echo(f"demo tokens are in {folder}")

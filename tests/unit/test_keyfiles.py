"""Key files made on first use: whole or not at all, one per path however many
processes make it at once, private, and nothing left beside them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from at_once import run_at_once
from domicile.keyfiles import load_or_create, replace


def test_a_key_is_made_once_and_then_read(tmp_path: Path) -> None:
    path = tmp_path / "region" / "kek.key"
    made = load_or_create(path, lambda: os.urandom(32))
    assert len(made) == 32
    assert load_or_create(path, lambda: b"not used") == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["kek.key"]


def test_processes_making_one_key_at_once_all_get_the_same_whole_key(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "from pathlib import Path\n"
        "from domicile.keyfiles import load_or_create\n"
        "print(load_or_create(Path(sys.argv[1]), lambda: os.urandom(4096)).hex())\n"
    )
    for trial in range(3):
        path = tmp_path / f"key-{trial}"
        seen = {out.strip() for out in run_at_once(code, [str(path)], processes=4)}
        assert seen == {path.read_bytes().hex()}
        assert len(path.read_bytes()) == 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key-0", "key-1", "key-2"]


def test_replace_puts_a_whole_new_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    replace(path, b"first\n")
    replace(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin.token"]

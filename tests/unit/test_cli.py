"""The `domicile` command's own behaviour: errors are one line on stderr, exit status 1."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from domicile.cli import main


def test_a_database_that_cannot_be_reached_is_a_one_line_error(tmp_path: Path) -> None:
    """libpq's message carries a second, indented line: it is folded into the first."""
    env = {
        "DOMICILE_STORAGE_URL": "postgresql://nobody@127.0.0.1:1/none?schema=down",
        "DOMICILE_DATA_DIR": str(tmp_path / "data"),
    }
    result = CliRunner().invoke(main, ["principals", "list"], env=env)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach postgresql for schema `down_control`")
    assert "Is the server running" in lines[0]

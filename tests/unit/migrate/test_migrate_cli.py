"""`domicile migrate demo-source|run|verify` through click's CliRunner: the options an
operator chooses reach the run, and a bad one is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from domicile.cli import main


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("preparers", ["1", "2"])
def test_run_with_chosen_preparers_moves_every_row(tmp_path: Path, preparers: str) -> None:
    source, mapping = f"sqlite:///{tmp_path / 'legacy.db'}", str(tmp_path / "map.toml")
    code, out = _invoke(
        "migrate", "demo-source", "--out", source, "--rows", "900", "--mapping-out", mapping,
        "--seed", "7",
    )  # fmt: skip
    assert code == 0, out
    data = str(tmp_path / "data")
    common = ["--source", source, "--mapping", mapping, "--data-dir", data]
    code, out = _invoke("migrate", "run", *common, "--preparers", preparers, "--no-progress")
    assert code == 0, out
    moved = int(out.split("moved ")[-1].split(" rows")[0])
    quarantined = int(out.split("quarantined ")[1].split(",")[0])
    assert moved + quarantined == 900
    assert moved > 0
    code, out = _invoke("migrate", "verify", *common)
    assert code == 0, out


def test_zero_preparers_is_refused_in_one_line(tmp_path: Path) -> None:
    code, out = _invoke(
        "migrate", "run", "--source", f"sqlite:///{tmp_path / 'x.db'}", "--mapping",
        str(tmp_path / "m.toml"), "--preparers", "0",
    )  # fmt: skip
    assert code != 0
    assert "--preparers" in out

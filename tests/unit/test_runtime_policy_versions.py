"""Policy versions through the runtime: every version that decides is in every region's
log first, a large set starts and reloads (recorded compressed, rebuilt by the monitor),
and a version that cannot be recorded is never activated."""

from __future__ import annotations

from pathlib import Path

import pytest
from policy.policy_support import padded_policies

from domicile.errors import ConfigError, RecordingFailed
from domicile.ledger.entry import decode_entry
from domicile.monitor.replay import engine_from_record
from domicile.policy.snapshot import default_policies
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings


def _versions(runtime: Runtime, region: str) -> list[dict[str, object]]:
    log = runtime.logs[region]
    entries = [decode_entry(log.entry(i)) for i in range(log.size)]
    return [e for e in entries if e["kind"] == "policy-version"]


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.cedar"
    path.write_text(padded_policies(600))
    return path


def test_a_gateway_starts_with_a_large_policy_set_that_the_monitor_can_rebuild(
    tmp_path: Path, policy_file: Path
) -> None:
    runtime = open_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy_file))
    try:
        for region in runtime.topology.regions:
            (entry,) = _versions(runtime, region)
            assert "policies_zlib" in entry  # too large for an entry as text
            record = {k: v for k, v in entry.items() if k not in {"v", "kind", "region", "time"}}
            assert engine_from_record(record).policy_hash == runtime.policy.policy_hash
    finally:
        runtime.close()


def test_a_reload_that_cannot_be_recorded_leaves_the_version_in_force(
    tmp_path: Path, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_file.write_text(default_policies().text)
    runtime = open_runtime(Settings(data_dir=tmp_path / "data", policy_file=policy_file))
    try:
        in_force = runtime.policy.policy_hash
        policy_file.write_text(padded_policies(4000))  # too large even compressed
        with pytest.raises(ConfigError, match="too large to record"):
            runtime.reload_policy()
        assert runtime.policy.policy_hash == in_force

        policy_file.write_text(padded_policies(10))  # fits, but the ledger fails

        def failing(events: object) -> list[int]:
            raise RecordingFailed("ledger append failed: the disk is gone")

        monkeypatch.setattr(runtime.gateway, "record", failing)
        with pytest.raises(RecordingFailed):
            runtime.reload_policy()
        assert runtime.policy.policy_hash == in_force
        monkeypatch.undo()
        assert len(_versions(runtime, "eu-ie")) == 1  # only the start's

        record = runtime.reload_policy()  # and once the ledger works, it goes through
        assert runtime.policy.policy_hash == record["policy_hash"] != in_force
        assert _versions(runtime, "eu-ie")[-1]["policy_hash"] == record["policy_hash"]
    finally:
        runtime.close()

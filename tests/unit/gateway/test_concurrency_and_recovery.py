"""Concurrent writers lose nothing; crashes mid-registration or mid-relocation recover."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from domicile.errors import Conflict, SubjectNotFound, VersionMismatch
from domicile.gateway.pipeline import Gateway
from domicile.gateway.relocation import RecoverySweeper, recover, relocate
from domicile.ledger.entry import decode_entry
from domicile.principals.store import Principal
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings
from domicile.vault.store import SubjectState, Vault


def test_eight_concurrent_writers_through_the_gateway(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    gw = runtime.gateway
    svc = gw.authenticate(tokens["svc"])
    sid, _ = gw.register(svc, "IE", {"email": "w@example.org", "like_count": 0})
    per_writer = 10
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(per_writer):
                # Each writer owns a field (no conflict) and shares a counter (conflicts).
                gw.update(svc, sid, {"bio": f"writer {n} step {i}"})
                while True:
                    view = gw.read(svc, sid, ["like_count"], "service")
                    try:
                        gw.update(
                            svc,
                            sid,
                            {"like_count": view.fields["like_count"] + 1},
                            expected_version=view.version,
                        )
                        break
                    except VersionMismatch:
                        continue
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    view = gw.read(svc, sid, None, "service")
    assert view.fields["like_count"] == 8 * per_writer
    assert view.fields["email"] == "w@example.org"
    assert view.version == 1 + 2 * 8 * per_writer


class Crash(BaseException):
    """Stands for the process dying at a chosen step."""


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("step", ["create_data_keys", "insert_many"])
def test_crash_during_registration_leaves_nothing(
    runtime: Runtime, tokens: dict[str, str], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = runtime.gateway
    svc = gw.authenticate(tokens["svc"])
    region = gw.regions["eu-ie"]
    target = region.custodian if step == "create_data_keys" else region.vault
    original = getattr(target, step)

    def crash_after(*args: object, **kwargs: object) -> object:
        original(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(target, step, crash_after)
    monkeypatch.setattr(gw.directory, "forget", lambda ids: None)  # the process is dead
    with pytest.raises(Crash):
        gw.register(svc, "IE", {"email": "c@example.org"})
    monkeypatch.undo()
    assert len(runtime.directory.pending()) == 1
    assert recover(gw) == 1
    assert runtime.directory.pending() == []
    assert region.vault.count() == 0
    assert region.vault.count(SubjectState.ERASED) == 0


STEPS = ["insert", "fetch", "switch_home", "destroy_data_key", "tombstone", "record"]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("step", STEPS)
def test_crash_during_relocation_ends_in_exactly_one_vault(
    runtime: Runtime, tokens: dict[str, str], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = runtime.gateway
    svc = gw.authenticate(tokens["svc"])
    sid, _ = gw.register(svc, "IE", {"email": "m@example.org", "display_name": "M"})
    origin, target = gw.regions["eu-ie"], gw.regions["us"]
    owner = {
        "insert": target.vault,
        "fetch": target.vault,
        "switch_home": gw.directory,
        "destroy_data_key": origin.custodian,
        "tombstone": origin.vault,
        "record": gw,
    }[step]
    original = getattr(owner, step)

    def crash(*args: object, **kwargs: object) -> object:
        # The step completes, then the process dies (for `fetch`: the copy's read-back).
        original(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(owner, step, crash)
    monkeypatch.setattr(gw.directory, "settle_move", lambda sid: None)  # dead before cleanup
    with pytest.raises(Crash):
        relocate(gw, svc, sid, "US")
    monkeypatch.undo()
    recover(gw)
    assert runtime.directory.pending() == []
    home = runtime.directory.lookup(sid).home_region
    states = {name: r.vault.state(sid) for name, r in gw.regions.items()}
    active = [name for name, state in states.items() if state is SubjectState.ACTIVE]
    assert active == [home]
    reader = gw.authenticate(tokens["svc_us" if home == "us" else "svc"])
    view = gw.read(reader, sid, None, "service")
    assert view.fields == {"email": "m@example.org", "display_name": "M"}
    # A move that happened is in both logs, paired, however the crash fell; one undone is not.
    moves = {
        region: [
            e for e in map(decode_entry, _entries(runtime, region)) if e["kind"] == "relocation"
        ]
        for region in ("eu-ie", "us")
    }
    if home == "us":
        # Recorded once, or (a crash after the record) once more by recovery, marked so.
        *_, out = moves["eu-ie"]
        *_, into = moves["us"]
        assert len(moves["eu-ie"]) == len(moves["us"]) == (2 if step == "record" else 1)
        assert (out["direction"], into["direction"]) == ("out", "in")
        assert out["relocation_id"] == into["relocation_id"]
        assert into["subject_ref"] == gw.subject_ref("us", sid)
        assert into["fields"] == 2
        assert out.get("recovered") is into.get("recovered") is True
    else:
        assert moves == {"eu-ie": [], "us": []}


def _entries(runtime: Runtime, region: str) -> list[bytes]:
    log = runtime.logs[region]
    return [log.entry(i) for i in range(log.size)]


def test_unknown_subject_relocation_is_404(runtime: Runtime, tokens: dict[str, str]) -> None:
    svc = runtime.gateway.authenticate(tokens["svc"])
    with pytest.raises(SubjectNotFound):
        relocate(runtime.gateway, svc, "0" * 32, "US")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_process_starting_leaves_a_registration_in_flight_alone(
    runtime: Runtime, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second process on the same data (a CLI command beside the gateway) runs its
    start-up recovery while a registration is between reservation and activation."""
    gw = runtime.gateway
    svc = gw.authenticate(tokens["svc"])
    insert_many = gw.regions["eu-ie"].vault.insert_many

    def another_process_starts(*args: object, **kwargs: object) -> None:
        insert_many(*args, **kwargs)  # type: ignore[arg-type]
        open_runtime(runtime.settings).close()

    monkeypatch.setattr(gw.regions["eu-ie"].vault, "insert_many", another_process_starts)
    sid, _ = gw.register(svc, "IE", {"email": "f@example.org"})
    assert gw.read(svc, sid, ["email"], "service").fields == {"email": "f@example.org"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_registration_whose_reservation_was_undone_fails_and_leaves_nothing(
    runtime: Runtime, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = runtime.gateway
    svc = gw.authenticate(tokens["svc"])
    region = gw.regions["eu-ie"]
    insert_many = region.vault.insert_many

    def undone_meanwhile(*args: object, **kwargs: object) -> None:
        insert_many(*args, **kwargs)  # type: ignore[arg-type]
        assert recover(gw) == 1  # a recovery that does not wait for idle entries

    monkeypatch.setattr(region.vault, "insert_many", undone_meanwhile)
    with pytest.raises(Conflict, match="undone"):
        gw.register(svc, "IE", {"email": "u@example.org"})
    assert runtime.directory.pending() == []
    assert region.vault.count() == 0
    assert sum(runtime.directory.counts().values()) == 0


@pytest.mark.parametrize("backend", ["sqlite"])
def test_recovery_waits_for_entries_to_be_idle_and_sweeps_them_later(
    runtime: Runtime, tokens: dict[str, str]
) -> None:
    gw = runtime.gateway
    runtime.directory.reserve([("a" * 32, "eu-ie"), ("b" * 32, "us")])
    with runtime.directory.db.transaction() as tx:
        tx.execute(
            "UPDATE subject_directory SET updated_at = '2020-01-01T00:00:00+00:00' WHERE id = ?",
            ("a" * 32,),
        )
    assert recover(gw, idle_for=300) == 1  # only the one idle for five minutes
    assert [e.id for e in runtime.directory.pending()] == ["b" * 32]
    sweeper = RecoverySweeper(gw, 0.05)
    sweeper.start()
    try:
        deadline = time.monotonic() + 30
        while runtime.directory.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert runtime.directory.pending() == []


QUICK_IDLE = 1.0
"""A recovery window short enough to pass during one slow registration, and long enough
that a beat (every quarter of it) late on a loaded machine still lands within it."""


@pytest.fixture
def quick_recovery(settings: Settings) -> Iterator[Runtime]:
    """A runtime whose sweeper undoes what has been idle for `QUICK_IDLE` seconds, swept
    as often (and whose registrations beat four times as often)."""
    rt = open_runtime(settings.model_copy(update={"recovery_idle": QUICK_IDLE}))
    yield rt
    rt.close()


def _irish_service(rt: Runtime) -> tuple[Gateway, Principal, Vault]:
    """The gateway, an Irish service principal, and the Irish vault."""
    gw = rt.gateway
    svc = gw.authenticate(rt.principals.add("svc", "Domicile EU Ltd", "IE", {"service"}))
    return gw, svc, gw.regions["eu-ie"].vault


def test_touch_freshens_only_reservations_still_registering(runtime: Runtime) -> None:
    directory = runtime.directory
    reserved, active = "a" * 32, "b" * 32
    directory.reserve([(reserved, "eu-ie"), (active, "eu-ie")])
    directory.activate([active])
    with directory.db.transaction() as tx:
        tx.execute("UPDATE subject_directory SET updated_at = '2020-01-01T00:00:00+00:00'")
    assert directory.touch([reserved, active, "c" * 32]) == 1
    assert [e.id for e in directory.pending()] == [reserved]
    assert directory.pending(idle_since="2021-01-01T00:00:00+00:00") == []
    assert directory.lookup(active).state == "active"


def test_a_registration_slower_than_the_recovery_window_is_kept_alive(
    quick_recovery: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store step outlasts the window while the sweeper runs, and a
    recovery with that window runs at its end: the reservation was kept fresh."""
    gw, svc, vault = _irish_service(quick_recovery)
    insert_many = vault.insert_many

    def slow_insert(*args: object, **kwargs: object) -> None:
        time.sleep(2.5 * QUICK_IDLE)
        assert recover(gw, idle_for=QUICK_IDLE) == 0
        insert_many(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(vault, "insert_many", slow_insert)
    sid, region = gw.register(svc, "IE", {"email": "s@example.org"})
    assert region == "eu-ie"
    assert gw.read(svc, sid, ["email"], "service").fields == {"email": "s@example.org"}
    assert quick_recovery.directory.pending() == []


def test_a_crashed_registration_falls_idle_and_is_recovered(
    quick_recovery: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat ends with the registration: what a crash left goes idle and the
    sweeper undoes it."""
    gw, svc, vault = _irish_service(quick_recovery)
    insert_many = vault.insert_many

    def crash_after(*args: object, **kwargs: object) -> None:
        insert_many(*args, **kwargs)  # type: ignore[arg-type]
        raise Crash

    monkeypatch.setattr(vault, "insert_many", crash_after)
    monkeypatch.setattr(gw.directory, "forget", lambda ids: None)  # the process is dead
    with pytest.raises(Crash):
        gw.register(svc, "IE", {"email": "c@example.org"})
    monkeypatch.undo()
    assert len(quick_recovery.directory.pending()) == 1
    deadline = time.monotonic() + 30
    while quick_recovery.directory.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert quick_recovery.directory.pending() == []
    assert vault.count() == 0


def test_two_recoveries_of_one_crashed_move_record_it_once(
    runtime: Runtime, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateways on one directory sweep at the same moment and both read the same move
    a crash left after the switch: one of them finishes it, and the move is in each log
    once (a second `relocation` pair would tell the monitor the subject moved twice)."""
    gw = runtime.gateway
    svc = gw.authenticate(tokens["svc"])
    sid, _ = gw.register(svc, "IE", {"email": "r@example.org"})
    original = gw.regions["eu-ie"].custodian.destroy_data_key

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash  # dead after the switch, before the origin is shredded

    monkeypatch.setattr(gw.regions["eu-ie"].custodian, "destroy_data_key", crash)
    with pytest.raises(Crash):
        relocate(gw, svc, sid, "US")
    monkeypatch.setattr(gw.regions["eu-ie"].custodian, "destroy_data_key", original)
    read = gw.directory.pending
    both_read = threading.Barrier(2)

    def pending(idle_since: str | None = None) -> list[object]:
        entries = read(idle_since)
        both_read.wait(timeout=10)  # neither goes on before the other has read the move
        return entries

    monkeypatch.setattr(gw.directory, "pending", pending)
    done: list[int] = []
    sweeps = [threading.Thread(target=lambda: done.append(recover(gw))) for _ in range(2)]
    for sweep in sweeps:
        sweep.start()
    for sweep in sweeps:
        sweep.join()
    assert sorted(done) == [0, 1]
    assert read() == []
    for region in ("eu-ie", "us"):
        moves = [
            e for e in map(decode_entry, _entries(runtime, region)) if e["kind"] == "relocation"
        ]
        assert len(moves) == 1, region

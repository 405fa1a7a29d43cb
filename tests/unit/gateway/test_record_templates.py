"""Decision events of a batch share a template the recorder encodes once: the entries
must be byte for byte what encoding each filled-in event gives."""

from __future__ import annotations

from pathlib import Path

from domicile.gateway.pipeline import ReadContext
from domicile.gateway.record import LedgerRecorder, fill_in
from domicile.gateway.request import Event
from domicile.ledger.entry import decode_entry, encode_entry
from domicile.runtime import open_runtime
from domicile.settings import Settings

PERSON = {"full_name": "Ana Silva", "email": "ana@example.org", "display_name": "Ana"}


def test_batch_entries_equal_their_reference_encoding(tmp_path: Path) -> None:
    runtime = open_runtime(Settings(data_dir=tmp_path / "gw", checkpoint_interval=3600))
    try:
        token = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
        principal = runtime.gateway.authenticate(token)
        people = [("IE", {**PERSON, "email": f"p{i}@example.org"}) for i in range(5)]
        ids = [sid for sid, _ in runtime.gateway.register_many(principal, people)]
        seen: list[Event] = []
        record = runtime.gateway.recorder.record

        def spy(events: list[Event]) -> list[int]:
            seen.extend(events)
            return record(events)

        runtime.gateway.recorder.record = spy  # type: ignore[method-assign]
        log = runtime.logs["eu-ie"]
        start = log.size
        views = runtime.gateway.batch_get(
            principal, [*ids, "f" * 32], ["email", "display_name"], "support", ReadContext()
        )
        assert all(not isinstance(v, Exception) for v in views[:5])
        decisions = [e for e in seen if e.kind == "decision"]
        assert len(decisions) == 5
        assert all(e.fill is not None for e in decisions)
        assert len({id(e.attributes) for e in decisions}) == 1  # one shared template
        written = [decode_entry(log.entry(i)) for i in range(start, log.size)]
        for event, entry in zip(decisions, written, strict=True):
            filled = fill_in(event)
            assert log.entry(start + decisions.index(event)) == encode_entry(
                "decision", "eu-ie", str(entry["time"]), filled
            )
            assert entry["decision_id"] == event.fill["@slot:decision_id@"]
            assert entry["input"]["resource"]["subject_ref"] == event.fill["@slot:subject_ref@"]
            assert "@slot" not in log.entry(start + decisions.index(event)).decode()
        assert len({e["decision_id"] for e in written}) == 5
        assert len({e["input"]["resource"]["subject_ref"] for e in written}) == 5
    finally:
        runtime.close()


def test_templates_the_fast_path_cannot_cut_are_encoded_filled_in() -> None:
    """A placeholder that occurs twice, or a fill naming other placeholders than the
    first event of the template, still gives the reference encoding."""
    twice = {"a": "@slot:x@", "b": "@slot:x@", "c": "@slot:y@"}
    shared = {"a": "@slot:x@", "b": "@slot:y@"}
    events = [
        Event("decision", "eu-ie", twice, {"@slot:x@": "one", "@slot:y@": "two"}),
        Event("decision", "eu-ie", shared, {"@slot:x@": "p", "@slot:y@": "q"}),
        Event("decision", "eu-ie", shared, {"@slot:y@": "r", "@slot:x@": "s"}),
        Event("decision", "eu-ie", shared, {"@slot:x@": "only x"}),
    ]
    encoded = LedgerRecorder._encode(events)["eu-ie"]
    for (_, entry), event in zip(encoded, events, strict=True):
        time = str(decode_entry(entry)["time"])
        assert entry == encode_entry("decision", "eu-ie", time, fill_in(event))
    assert decode_entry(encoded[0][1])["b"] == "one"
    assert decode_entry(encoded[2][1])["a"] == "s"
    assert decode_entry(encoded[3][1])["b"] == "@slot:y@"

"""The collector settings of a long-running process: set while an app serves, undone after."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.settings import Settings


def test_the_start_up_heap_is_frozen_only_while_the_app_serves(tmp_path: Path) -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"))) as api:
        assert gc.get_freeze_count() > frozen  # the runtime and the app, out of the collector
        assert gc.get_threshold()[0] > thresholds[0]
        assert api.get("/healthz").json() == {"status": "ok"}
    # Shut down: a process that starts many apps keeps none of their garbage frozen.
    assert gc.get_freeze_count() == frozen
    assert gc.get_threshold() == thresholds


class _Cycle:
    """An object that keeps itself alive until the cyclic collector finds it."""

    def __init__(self) -> None:
        self.me = self


def test_garbage_left_from_before_the_start_is_not_kept_frozen(tmp_path: Path) -> None:
    gc.disable()  # no automatic collection may find the cycle first
    try:
        cycle = _Cycle()
        alive = weakref.ref(cycle)
        del cycle  # garbage now, held only by its own cycle
        with TestClient(create_app(Settings(data_dir=tmp_path / "data"))):
            assert alive() is None  # collected at start, not frozen for the app's life
    finally:
        gc.enable()

"""One page of a dataset export: stored rows and their data keys in, NDJSON lines out.

`PageSpooler.page` opens each subject's sealed values, transforms them under the
agreement's plan, writes the line ``{"fields": {...}, "subject": <pseudonym>}``, and
returns the lines with each subject's threshold ref and the page's count of
quasi-identifier classes. It touches no database and holds no state between pages, so
a large export runs it in worker processes (`page_executor`): the transforms are pure
CPU under the GIL, and on several cores they overlap the gateway's own reading of the
vault and unwrapping of keys. Only the keys of this one export travel to the workers —
the data keys of the page (after their unwraps were recorded), the agreement's
pseudonym domain key, the region's token key and the counter's ref key — and the
workers live as long as the export.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import orjson

from domicile.catalog.catalog import JsonValue, decode_canonical
from domicile.errors import InvalidInput
from domicile.keys.envelope import open_fields
from domicile.pets.kanon import freeze
from domicile.pets.keyed import Pseudonymiser, canonical_value, encode_pseudonyms
from domicile.pets.transform import CanonicalTransform, FieldPlan
from domicile.transfers.thresholds import SubjectRefs
from domicile.vault.store import unpack_sealed

__all__ = ["PageOut", "PageRecipe", "PageSpooler", "Row", "page_executor"]

Row = tuple[str, str | None]
"""A subject id and its stored values (`Vault.active_sealed_page`)."""

Opener = Callable[[str, bytes, Mapping[str, bytes]], dict[str, JsonValue]]
"""Open and transform one subject's sealed values: (subject id, data key, sealed)."""


@dataclass(frozen=True)
class PageRecipe:
    """Everything a page needs, and nothing else: picklable, so workers get it once."""

    region: str
    domain: str  # the agreement id: the pseudonym domain of fields and subject ids
    plan: dict[str, FieldPlan]  # the planned fields that are sent
    domain_key: bytes  # the region's pseudonym key of `domain`
    token_key: bytes  # the region's token key (for `tokenise`)
    refs: SubjectRefs  # the threshold counter's subject refs
    quasi_identifiers: tuple[str, ...]


@dataclass
class PageOut:
    """What one page gave: its lines, a ref per line, and its quasi-identifier classes."""

    lines: bytes
    refs: bytes
    records: int
    classes: Counter[Hashable]


class _RecipeKeys:
    """The `PetKeys` of a recipe: the one domain key and the token key it carries."""

    def __init__(self, recipe: PageRecipe) -> None:
        self._recipe = recipe

    @property
    def region(self) -> str:
        return self._recipe.region

    def pseudonym_key(self, domain: str) -> bytes:
        if domain != self._recipe.domain:
            raise InvalidInput("an export page pseudonymises in its agreement's domain only")
        return self._recipe.domain_key

    def token_key(self) -> bytes:
        return self._recipe.token_key


def _line(subject: str, values: dict[str, JsonValue]) -> bytes:
    document = {"fields": values, "subject": subject}
    try:
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # e.g. an integer wider than 64 bits
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode() + b"\n"


class PageSpooler:
    """Turns pages of one export into lines; `opener` replaces the compiled plan (a
    gateway whose transform step is not the standard one)."""

    def __init__(self, recipe: PageRecipe, opener: Opener | None = None) -> None:
        """Compile the recipe's plan once for every page."""
        self._recipe = recipe
        self._names = sorted(recipe.plan)
        self._subject = Pseudonymiser(recipe.domain_key, "subject_id")
        self._open = opener
        self._compiled = (
            CanonicalTransform(
                recipe.plan, _RecipeKeys(recipe), domain=recipe.domain, decode=decode_canonical
            )
            if opener is None
            else None
        )

    def _values(self, rows: Sequence[Row], keys: Mapping[str, bytes]) -> list[dict[str, JsonValue]]:
        """Each row's fields as they are sent; {} for a row without a key or values."""
        region, names = self._recipe.region, self._names
        sealed: list[tuple[str, bytes, dict[str, bytes]]] = []  # (id, key, sealed) per row
        for sid, stored in rows:
            key = keys.get(sid)
            values = unpack_sealed(sid, region, stored, names) if key is not None else {}
            sealed.append((sid, key or b"", values))
        if self._compiled is None:
            assert self._open is not None
            opener = self._open
            return [opener(sid, key, values) if values else {} for sid, key, values in sealed]
        # The standard plan: open every row, then transform the page at once.
        opened = [open_fields(key, sid, region, values) if values else {}
                  for sid, key, values in sealed]  # fmt: skip
        return self._compiled.apply_many(opened)

    def page(self, rows: Sequence[Row], keys: Mapping[str, bytes]) -> PageOut:
        """The lines of `rows`; a row without a key in `keys` is sent with no fields
        (it holds none of them). Raise IntegrityError on a tampered value."""
        qis, refs = self._recipe.quasi_identifiers, self._recipe.refs
        subjects = encode_pseudonyms(
            [self._subject.mac(canonical_value("subject_id", sid)) for sid, _ in rows]
        )
        lines: list[bytes] = []
        ref_text: list[str] = []
        classes: Counter[Hashable] = Counter()
        for (sid, _), subject, values in zip(rows, subjects, self._values(rows, keys), strict=True):
            lines.append(_line(subject, values))
            ref_text.append(refs(sid))
            classes[freeze([values.get(q) for q in qis])] += 1
        return PageOut(b"".join(lines), "".join(ref_text).encode("ascii"), len(lines), classes)


_worker: PageSpooler | None = None  # the spooler of a worker process (one export each)


def _start_worker(recipe: PageRecipe) -> None:
    global _worker
    _worker = PageSpooler(recipe)


def _worker_page(rows: Sequence[Row], keys: Mapping[str, bytes]) -> PageOut:
    assert _worker is not None, "the worker was started without its recipe"
    return _worker.page(rows, keys)


@contextlib.contextmanager
def page_executor(
    spooler: PageSpooler, recipe: PageRecipe, workers: int
) -> Iterator[Callable[[Sequence[Row], Mapping[str, bytes]], Future[PageOut]]]:
    """A `submit(rows, keys)` that runs pages in `workers` processes (spawned, so they
    share nothing with the gateway but the recipe), or in one thread when `workers` is
    0 (the thread still overlaps the caller's database work). Pending pages are
    cancelled and the workers stopped on the way out, error or not."""
    executor: Executor
    if workers > 0:
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(recipe,),
        )
        run: Callable[[Sequence[Row], Mapping[str, bytes]], PageOut] = _worker_page
    else:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="domicile-export")
        run = spooler.page
    try:
        yield lambda rows, keys: executor.submit(run, rows, keys)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)

"""C2SP tlog-tiles: tile and entry bundle paths, encodings and geometry.

See https://c2sp.org/tlog-tiles. A hash tile at tile level ``L`` and index ``N``
holds the hashes of the perfect subtrees at Merkle level ``8 * L`` with indices
``N * 256`` to ``N * 256 + W - 1`` ("Merkle Tree" section); an entry bundle
holds the entries whose leaf hashes form the level 0 tile of the same index.
Paths are relative to the log prefix (``tile/0/x001/x234/067.p/5``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from domicile.errors import EntryNotFound, InvalidInput, LedgerError, PayloadTooLarge
from domicile.ledger.merkle import HASH_SIZE, NodeReader, root_from_leaves

TILE_HEIGHT = 8
"""Merkle levels spanned by one tile."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile, and entries in a full bundle (256)."""

MAX_TILE_LEVEL = 63
"""Highest tile level a path may name ("Merkle Tree": 0 to 63)."""

MAX_ENTRY_SIZE = 0xFFFF
"""Largest entry an entry bundle can hold (uint16 length prefix)."""

MAX_TILE_INDEX = (1 << 64) - 1
"""Largest tile or bundle index accepted (indices are uint64 in practice)."""

_LEVEL = r"(?P<level>0|[1-9][0-9]?|entries)"
_INDEX = r"(?P<index>(?:x[0-9]{3}/){0,6}[0-9]{3})"
_WIDTH = r"(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
_PATH = re.compile(f"tile/{_LEVEL}/{_INDEX}{_WIDTH}", re.ASCII)


@dataclass(frozen=True, slots=True)
class TileRef:
    """A hash tile: tile level, index and width (256 for a full tile)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL:
            raise InvalidInput(f"tile level `{self.level}` is not between 0 and {MAX_TILE_LEVEL}")
        _check_index_width(self.index, self.width)

    @property
    def is_partial(self) -> bool:
        """Whether the tile holds fewer than 256 hashes."""
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """The tile's path, `tile/<L>/<N>[.p/<W>]`."""
        return f"tile/{self.level}/{_encode_index(self.index)}{_width_suffix(self.width)}"

    @property
    def merkle_level(self) -> int:
        """Merkle level of the hashes the tile holds (8 × tile level)."""
        return self.level * TILE_HEIGHT

    @property
    def first_node(self) -> int:
        """Index, at :attr:`merkle_level`, of the tile's first hash."""
        return self.index * TILE_WIDTH

    @property
    def bundle(self) -> BundleRef:
        """The entry bundle of a level 0 tile."""
        if self.level != 0:
            raise InvalidInput(f"only level 0 tiles have entry bundles, not level `{self.level}`")
        return BundleRef(self.index, self.width)


@dataclass(frozen=True, slots=True)
class BundleRef:
    """An entry bundle: index and width (256 for a full bundle)."""

    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        _check_index_width(self.index, self.width)

    @property
    def is_partial(self) -> bool:
        """Whether the bundle holds fewer than 256 entries."""
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """The bundle's path, `tile/entries/<N>[.p/<W>]`."""
        return f"tile/entries/{_encode_index(self.index)}{_width_suffix(self.width)}"

    @property
    def first_entry(self) -> int:
        """Index in the log of the bundle's first entry."""
        return self.index * TILE_WIDTH

    @property
    def tile(self) -> TileRef:
        """The level 0 tile holding the leaf hashes of the bundle's entries."""
        return TileRef(0, self.index, self.width)


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """Return the path `tile/<L>/<N>[.p/<W>]` of a hash tile."""
    return TileRef(level, index, width).path


def bundle_path(index: int, width: int = TILE_WIDTH) -> str:
    """Return the path `tile/entries/<N>[.p/<W>]` of an entry bundle."""
    return BundleRef(index, width).path


def parse_path(path: str) -> TileRef | BundleRef:
    """Parse a canonical tile or entry bundle path; reject any other spelling."""
    match = _PATH.fullmatch(path)
    if match is None:
        raise InvalidInput(f"`{path}` is not a tile path")
    level_text = match["level"]
    index = int(match["index"].replace("x", "").replace("/", ""))
    width = TILE_WIDTH if match["width"] is None else int(match["width"])
    # A full tile has no `.p/256` suffix: partial widths are 1 to 255.
    if (match["width"] is not None and width >= TILE_WIDTH) or index > MAX_TILE_INDEX:
        raise InvalidInput(f"`{path}` is not a tile path")
    ref: TileRef | BundleRef
    if level_text == "entries":
        ref = BundleRef(index, width)
    elif int(level_text) > MAX_TILE_LEVEL:
        raise InvalidInput(f"`{path}` is not a tile path")
    else:
        ref = TileRef(int(level_text), index, width)
    # Only one spelling per tile: no spare `x000/` groups.
    if ref.path != path:
        raise InvalidInput(f"`{path}` is not the canonical tile path `{ref.path}`")
    return ref


def parse_tile_path(path: str) -> TileRef:
    """Parse a canonical hash tile path `tile/<L>/<N>[.p/<W>]`."""
    ref = parse_path(path)
    if not isinstance(ref, TileRef):
        raise InvalidInput(f"`{path}` is an entry bundle path, not a hash tile path")
    return ref


def parse_bundle_path(path: str) -> BundleRef:
    """Parse a canonical entry bundle path `tile/entries/<N>[.p/<W>]`."""
    ref = parse_path(path)
    if not isinstance(ref, BundleRef):
        raise InvalidInput(f"`{path}` is a hash tile path, not an entry bundle path")
    return ref


def encode_tile(hashes: Sequence[bytes]) -> bytes:
    """Concatenate 1 to 256 hashes into a tile."""
    if not 1 <= len(hashes) <= TILE_WIDTH:
        raise LedgerError(f"a tile holds 1 to {TILE_WIDTH} hashes, not {len(hashes)}")
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise LedgerError(f"tile hashes must be {HASH_SIZE} bytes, got {len(h)}")
    return b"".join(hashes)


def decode_tile(data: bytes, width: int) -> list[bytes]:
    """Split a tile of ``width`` hashes; its length must be exactly ``width * 32``."""
    if not 1 <= width <= TILE_WIDTH:
        raise LedgerError(f"tile width `{width}` is not between 1 and {TILE_WIDTH}")
    if len(data) != width * HASH_SIZE:
        raise LedgerError(
            f"tile of width {width} must be {width * HASH_SIZE} bytes, not {len(data)}"
        )
    return [bytes(data[i : i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Encode 1 to 256 entries as a bundle of big-endian uint16 length-prefixed entries."""
    parts: list[bytes] = []
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise PayloadTooLarge(
                f"ledger entry of {len(entry)} bytes exceeds {MAX_ENTRY_SIZE} bytes"
            )
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(bytes(entry))
    count = len(parts) // 2
    if not 1 <= count <= TILE_WIDTH:
        raise LedgerError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {count}")
    return b"".join(parts)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Decode an entry bundle; if ``width`` is given it must hold exactly that many entries."""
    entries: list[bytes] = []
    view = memoryview(data)
    offset = 0
    while offset < len(view):
        if len(entries) == TILE_WIDTH:
            raise LedgerError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if offset + 2 > len(view):
            raise LedgerError("entry bundle ends inside a length prefix")
        size = int.from_bytes(view[offset : offset + 2], "big")
        offset += 2
        if offset + size > len(view):
            raise LedgerError("entry bundle ends inside an entry")
        entries.append(bytes(view[offset : offset + size]))
        offset += size
    if not entries:
        raise LedgerError("entry bundle is empty")
    if width is not None and len(entries) != width:
        raise LedgerError(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries


def bundle_prefix(data: bytes, width: int) -> bytes:
    """The encoding of the first `width` entries of an encoded bundle (no entry is copied)."""
    offset = 0
    for _ in range(width):
        if offset + 2 > len(data):
            raise LedgerError("entry bundle ends inside a length prefix")
        offset += 2 + int.from_bytes(data[offset : offset + 2], "big")
    if offset > len(data):
        raise LedgerError("entry bundle ends inside an entry")
    return data[:offset]


def tiles_for_size(size: int) -> Iterator[TileRef]:
    """Yield every hash tile, full and partial, of a tree of ``size`` leaves."""
    return tiles_to_write(0, size)


def tiles_to_write(old_size: int, new_size: int) -> Iterator[TileRef]:
    """Yield the hash tiles that growing a tree from ``old_size`` to ``new_size`` creates."""
    if not 0 <= old_size <= new_size:
        raise LedgerError(f"cannot grow a tree from size `{old_size}` to `{new_size}`")
    level = 0
    # Level L tiles hold the floor(size / 256**L) complete level 8L hashes;
    # the last one is partial unless that count is a multiple of 256.
    while (new_count := new_size >> (TILE_HEIGHT * level)) > (old_size >> (TILE_HEIGHT * level)):
        old_count = old_size >> (TILE_HEIGHT * level)
        for index in range(old_count // TILE_WIDTH, (new_count - 1) // TILE_WIDTH + 1):
            yield TileRef(level, index, min(TILE_WIDTH, new_count - index * TILE_WIDTH))
        level += 1


def bundles_for_size(size: int) -> Iterator[BundleRef]:
    """Yield every entry bundle, full and partial, of a log of ``size`` entries."""
    return bundles_to_write(0, size)


def bundles_to_write(old_size: int, new_size: int) -> Iterator[BundleRef]:
    """Yield the entry bundles that growing a log from ``old_size`` to ``new_size`` creates."""
    for tile in tiles_to_write(old_size, new_size):
        if tile.level != 0:
            return
        yield tile.bundle


def node_reader_from_tiles(size: int, read_tile: Callable[[TileRef], bytes]) -> NodeReader:
    """Return a :data:`NodeReader` for a tree of ``size`` leaves stored as hash tiles.

    ``read_tile`` gets the tile (with the width the tree of ``size`` has) and
    returns its bytes; tiles are cached for the life of the returned reader.
    A node between tile levels is rebuilt from up to 128 hashes of its tile.
    """
    cache: dict[TileRef, list[bytes]] = {}

    def get_node(level: int, index: int) -> bytes:
        if level < 0 or index < 0 or (index + 1) << level > size:
            raise EntryNotFound(
                f"no complete subtree at level `{level}` index `{index}` in tree size `{size}`"
            )
        tile_level, rise = divmod(level, TILE_HEIGHT)
        first = index << rise  # first hash of the node at Merkle level 8 × tile_level
        tile_index, offset = divmod(first, TILE_WIDTH)
        count = size >> (TILE_HEIGHT * tile_level)
        tile = TileRef(tile_level, tile_index, min(TILE_WIDTH, count - tile_index * TILE_WIDTH))
        hashes = cache.get(tile)
        if hashes is None:
            hashes = cache[tile] = decode_tile(read_tile(tile), tile.width)
        return root_from_leaves(hashes[offset : offset + (1 << rise)])

    return get_node


def _check_index_width(index: int, width: int) -> None:
    if not 0 <= index <= MAX_TILE_INDEX:
        raise InvalidInput(f"tile index `{index}` is out of range")
    if not 1 <= width <= TILE_WIDTH:
        raise InvalidInput(f"tile width `{width}` is not between 1 and {TILE_WIDTH}")


def _encode_index(index: int) -> str:
    """Zero-padded 3-digit groups, all but the last prefixed by `x` (1234067 → x001/x234/067)."""
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _width_suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"

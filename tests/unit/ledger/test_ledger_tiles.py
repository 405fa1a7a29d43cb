"""C2SP tlog-tiles paths, encodings, geometry and proofs served from tiles."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import EntryNotFound, InvalidInput, LedgerError, PayloadTooLarge
from domicile.ledger.merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_reader_from_leaves,
    root_from_leaves,
    root_hash,
)
from domicile.ledger.tiles import (
    MAX_ENTRY_SIZE,
    MAX_TILE_INDEX,
    TILE_WIDTH,
    BundleRef,
    TileRef,
    bundle_path,
    bundle_prefix,
    bundles_for_size,
    bundles_to_write,
    decode_bundle,
    decode_tile,
    encode_bundle,
    encode_tile,
    node_reader_from_tiles,
    parse_bundle_path,
    parse_path,
    parse_tile_path,
    tile_path,
    tiles_for_size,
    tiles_to_write,
)

# --- paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 1234067, 256, "tile/0/x001/x234/067"),
        (0, 0, 256, "tile/0/000"),
        (1, 999, 256, "tile/1/999"),
        (2, 1000, 256, "tile/2/x001/000"),
        (63, 1_000_000, 255, "tile/63/x001/x000/000.p/255"),
        (0, 1234067, 5, "tile/0/x001/x234/067.p/5"),
        (3, MAX_TILE_INDEX, 1, "tile/3/x018/x446/x744/x073/x709/x551/615.p/1"),
    ],
)
def test_tile_paths(level: int, index: int, width: int, path: str) -> None:
    assert tile_path(level, index, width) == path
    assert parse_tile_path(path) == TileRef(level, index, width)
    assert parse_path(path) == TileRef(level, index, width)


def test_bundle_paths() -> None:
    assert bundle_path(1234067) == "tile/entries/x001/x234/067"
    assert bundle_path(0, 17) == "tile/entries/000.p/17"
    assert parse_bundle_path("tile/entries/x001/x234/067.p/3") == BundleRef(1234067, 3)
    assert BundleRef(5).tile == TileRef(0, 5)
    assert TileRef(0, 5, 9).bundle == BundleRef(5, 9)
    assert BundleRef(2).first_entry == 512
    with pytest.raises(InvalidInput):
        _ = TileRef(1, 5).bundle
    with pytest.raises(InvalidInput):
        parse_tile_path("tile/entries/000")
    with pytest.raises(InvalidInput):
        parse_bundle_path("tile/0/000")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tile/0/",
        "/tile/0/000",
        "tile/0/000/",
        "tile//000",
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/100/000",
        "tile/-1/000",
        "tile/0/67",
        "tile/0/0067",
        "tile/0/x000/067",
        "tile/0/x000/x001/067",
        "tile/0/x001/x002",
        "tile/0/001/067",
        "tile/0/X001/067",
        "tile/0/x01/067",
        "tile/0/x001067",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/0/000.p/05",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.P/5",
        "tile/0/000.p/5/",
        "tile/0/٠٠٠",
        "tile/٠/000",
        "tile/entries/x000/001",
        "tile/entries/000.p/256",
        "tile/Entries/000",
        "tiles/0/000",
        "tile/0/000\n",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
    ],
)
def test_non_canonical_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidInput):
        parse_path(path)


@given(
    st.integers(min_value=0, max_value=63),
    st.integers(min_value=0, max_value=MAX_TILE_INDEX),
    st.integers(min_value=1, max_value=256),
)
@settings(max_examples=300, deadline=None)
def test_paths_round_trip(level: int, index: int, width: int) -> None:
    tile = TileRef(level, index, width)
    assert parse_path(tile.path) == tile
    assert tile.is_partial is (width < 256)
    bundle = BundleRef(index, width)
    assert parse_path(bundle.path) == bundle


@given(st.text(alphabet="tile/entrx0123456789.p", max_size=40) | st.text(max_size=40))
@settings(max_examples=400, deadline=None)
def test_arbitrary_paths_raise_only_invalid_input(path: str) -> None:
    with contextlib.suppress(InvalidInput):
        assert parse_path(path).path == path


def test_refs_validate() -> None:
    for level, index, width in [(-1, 0, 1), (64, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257)]:
        with pytest.raises(InvalidInput):
            TileRef(level, index, width)
    with pytest.raises(InvalidInput):
        BundleRef(MAX_TILE_INDEX + 1)


# --- encodings -------------------------------------------------------------


def test_tile_encoding() -> None:
    hashes = [leaf_hash(b"%d" % i) for i in range(3)]
    data = encode_tile(hashes)
    assert data == b"".join(hashes)
    assert decode_tile(data, 3) == hashes
    for bad_width in (2, 4, 0, 257):
        with pytest.raises(LedgerError):
            decode_tile(data, bad_width)
    with pytest.raises(LedgerError):
        decode_tile(data[:-1], 3)
    with pytest.raises(LedgerError):
        encode_tile([])
    with pytest.raises(LedgerError):
        encode_tile([b"short"])
    with pytest.raises(LedgerError):
        encode_tile(hashes * 86)


def test_bundle_encoding() -> None:
    entries = [b"", b"a", b"\x00" * 300, b"x" * MAX_ENTRY_SIZE]
    data = encode_bundle(entries)
    assert data[:7] == b"\x00\x00\x00\x01a\x01\x2c"
    assert decode_bundle(data) == entries
    assert decode_bundle(data, 4) == entries
    with pytest.raises(LedgerError):
        decode_bundle(data, 5)
    for truncated in (data[:1], data[:4], data[:-1], b""):
        with pytest.raises(LedgerError):
            decode_bundle(truncated)
    with pytest.raises(PayloadTooLarge):
        encode_bundle([b"x" * (MAX_ENTRY_SIZE + 1)])
    with pytest.raises(LedgerError):
        encode_bundle([])
    with pytest.raises(LedgerError):
        encode_bundle([b""] * 257)
    with pytest.raises(LedgerError):
        decode_bundle(b"\x00\x00" * 257)
    assert decode_bundle(b"\x00\x00" * 256) == [b""] * 256


@given(st.lists(st.binary(max_size=70), min_size=1, max_size=256))
@settings(max_examples=100, deadline=None)
def test_bundles_round_trip(entries: list[bytes]) -> None:
    assert decode_bundle(encode_bundle(entries), len(entries)) == entries


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bundles_raise_only_ledger_error(data: bytes) -> None:
    with contextlib.suppress(LedgerError):
        assert encode_bundle(decode_bundle(data)) == data


# --- geometry --------------------------------------------------------------


def test_spec_example_tree_of_70000() -> None:
    tiles = list(tiles_for_size(70_000))
    full0 = [t for t in tiles if t.level == 0 and not t.is_partial]
    assert [t.index for t in full0] == list(range(273))
    assert TileRef(0, 273, 112) in tiles
    assert TileRef(1, 0) in tiles
    assert TileRef(1, 1, 17) in tiles
    assert TileRef(2, 0, 1) in tiles
    assert len(tiles) == 273 + 1 + 1 + 1 + 1
    assert list(tiles_for_size(256)) == [TileRef(0, 0), TileRef(1, 0, 1)]
    assert list(tiles_for_size(0)) == []
    assert list(bundles_for_size(513)) == [BundleRef(0), BundleRef(1), BundleRef(2, 1)]


def test_tile_contents() -> None:
    tile = TileRef(2, 3, 10)
    assert tile.merkle_level == 16
    assert tile.first_node == 768


@given(st.integers(min_value=0, max_value=3_000_000), st.integers(min_value=0, max_value=70_000))
@settings(max_examples=200, deadline=None)
def test_tiles_to_write_are_the_new_tiles(old: int, grow: int) -> None:
    new = old + grow
    before, after = set(tiles_for_size(old)), set(tiles_for_size(new))
    assert set(tiles_to_write(old, new)) == after - before
    assert {b.tile for b in bundles_to_write(old, new)} == {
        t for t in after - before if t.level == 0
    }
    # Each level has at most one partial tile, the last one.
    for level in {t.level for t in after}:
        row = sorted((t for t in after if t.level == level), key=lambda t: t.index)
        assert all(not t.is_partial for t in row[:-1])
        assert sum(t.width << (8 * level) for t in row) == (new >> (8 * level)) << (8 * level)


def test_tiles_to_write_checks_sizes() -> None:
    with pytest.raises(LedgerError):
        list(tiles_to_write(5, 4))
    with pytest.raises(LedgerError):
        list(tiles_to_write(-1, 4))


# --- proofs served from tiles ----------------------------------------------


def _tile_store(leaves: list[bytes]) -> dict[TileRef, bytes]:
    """Build the tiles of a tree the way a sequencer would, from completed subtrees."""
    compact = CompactRange()
    rows: dict[int, list[bytes]] = {}
    for node in compact.extend(leaves):
        if node.level % 8 == 0:
            row = rows.setdefault(node.level // 8, [])
            assert len(row) == node.index
            row.append(node.hash)
    store: dict[TileRef, bytes] = {}
    for tile in tiles_for_size(len(leaves)):
        start = tile.first_node
        store[tile] = encode_tile(rows[tile.level][start : start + tile.width])
    return store


def _check_tile_reader(leaves: list[bytes], probes: list[tuple[int, int]]) -> None:
    size = len(leaves)
    store = _tile_store(leaves)
    reads: list[TileRef] = []

    def read_tile(tile: TileRef) -> bytes:
        reads.append(tile)
        return store[tile]

    tiled = node_reader_from_tiles(size, read_tile)
    plain = node_reader_from_leaves(leaves)
    assert root_hash(size, tiled) == root_from_leaves(leaves)
    for index, old in probes:
        assert inclusion_proof(index, size, tiled) == inclusion_proof(index, size, plain)
        assert consistency_proof(old, size, tiled) == consistency_proof(old, size, plain)
    assert len(reads) == len(set(reads)), "tiles are cached"


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_proofs_from_tiles_match_proofs_from_leaves(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=1, max_value=3000), label="size")
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    probes = data.draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=size - 1),
                st.integers(min_value=1, max_value=size),
            ),
            min_size=1,
            max_size=5,
        ),
        label="probes",
    )
    _check_tile_reader(leaves, probes)


def test_proofs_from_tiles_with_three_tile_levels() -> None:
    size = 65536 + 256 * 3 + 7
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    probes = [(0, 1), (size - 1, size - 1), (65535, 65536), (65536, 256), (40000, 65537)]
    _check_tile_reader(leaves, probes)


def test_tile_reader_refuses_incomplete_subtrees() -> None:
    leaves = [leaf_hash(b"%d" % i) for i in range(300)]
    store = _tile_store(leaves)
    reader = node_reader_from_tiles(300, store.__getitem__)
    assert reader(8, 0) == root_from_leaves(leaves[:256])
    assert reader(2, 74) == root_from_leaves(leaves[296:300])
    for level, index in [(8, 1), (9, 0), (0, 300), (-1, 0), (0, -1), (3, 37)]:
        with pytest.raises(EntryNotFound):
            reader(level, index)
    broken = node_reader_from_tiles(300, lambda tile: b"\x00" * 31)
    with pytest.raises(LedgerError):
        broken(0, 0)
    assert TILE_WIDTH == 256


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=TILE_WIDTH), st.data())
def test_a_bundle_prefix_is_the_encoding_of_its_first_entries(
    entries: list[bytes], data: st.DataObject
) -> None:
    width = data.draw(st.integers(0, len(entries)))
    assert bundle_prefix(encode_bundle(entries), width) == (
        encode_bundle(entries[:width]) if width else b""
    )


def test_a_bundle_prefix_refuses_a_cut_bundle() -> None:
    encoded = encode_bundle([b"abc", b"defg"])
    with pytest.raises(LedgerError, match="inside an entry"):
        bundle_prefix(encoded[:-1], 2)
    with pytest.raises(LedgerError, match="inside a length prefix"):
        bundle_prefix(encoded[:6], 2)

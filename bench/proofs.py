"""Proofs from stored tiles: p50/p99 of inclusion and consistency proof generation and
verification, and the tree's bytes per entry.

    python bench/proofs.py                                  # CI size: 100,000 entries, temp store
    python bench/proofs.py --entries 10000000 --db /tmp/proofs-10m.sqlite   # the target figure

A store given with --db is reused and only grown to --entries, so the 10M build is paid once.
Leaves are synthetic (`leaf <seq>`), written straight into `entries` with tiles through the real
`TileCollector`, many leaves per transaction; the HTTP path is not measured here, but what its
inclusion route asks of the store is (`TreeReader.inclusion`, with and without a tile cache).
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.core.hashing import leaf_hash  # noqa: E402
from appliance.core.proof_verify import verify_consistency, verify_inclusion  # noqa: E402
from appliance.core.tiles import TILE_WIDTH  # noqa: E402
from appliance.core.tree import root_from_leaf_hashes  # noqa: E402
from appliance.store.db import connect, migrate  # noqa: E402
from appliance.store.tiles import TileCollector, read_tile  # noqa: E402
from appliance.store.tree_reader import TileCache, TreeReader  # noqa: E402
from appliance.core.tiles import TileID  # noqa: E402

BATCH = 100_000
ENTRY_SQL = ("INSERT INTO entries (seq, trace_id, run_seq, step, status, final, ts, received_at, source, data, hash)"
             " VALUES (?, 't', ?, 's', 'info', 0, 't', 't', 'b', ?, x'00')")


def build(path: Path, entries: int) -> None:
    """Grow the store at `path` to `entries` synthetic leaves (resuming whatever is there)."""
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    reader = TreeReader(conn)
    size = reader.size()
    if size >= entries:
        conn.close()
        return
    frontier, collector = reader.frontier(size), TileCollector.resume(conn, size)
    started, first = time.perf_counter(), size
    while size < entries:
        stop = min(size + BATCH, entries)
        rows = [(seq, seq, b"leaf %d" % seq) for seq in range(size, stop)]
        conn.execute("BEGIN IMMEDIATE")
        for row in rows:
            frontier.append(leaf_hash(row[2]), collector.on_node)
        conn.executemany(ENTRY_SQL, rows)
        collector.flush(conn)
        conn.execute("COMMIT")
        size = stop
        if size % 1_000_000 == 0:
            print(f"  built {size:,}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    print(f"built {size - first:,} entries in {elapsed:.1f} s ({(size - first) / elapsed:,.0f}/s)")
    conn.close()


def percentiles(samples_ns: list[int]) -> str:
    ms = sorted(s / 1e6 for s in samples_ns)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {p50:6.3f} ms  p99 {p99:6.3f} ms"


def timed(call):
    started = time.perf_counter_ns()
    result = call()
    return result, time.perf_counter_ns() - started


def measure_inclusion(reader: TreeReader, cases: list[tuple[int, int]], roots: dict[int, bytes], label: str) -> None:
    make, check = [], []
    for index, size in cases:
        leaf = leaf_hash(b"leaf %d" % index)
        proof, made = timed(lambda: reader.inclusion_proof(index, size))
        _, checked = timed(lambda: verify_inclusion(index, size, leaf, proof, roots[size]))
        make.append(made)
        check.append(checked)
    total = [a + b for a, b in zip(make, check)]
    print(f"inclusion {label:<28} generate {percentiles(make)} | verify {percentiles(check)} | both {percentiles(total)}")


def measure_consistency(reader: TreeReader, cases: list[tuple[int, int]], roots: dict[int, bytes], label: str) -> None:
    make, check = [], []
    for old, new in cases:
        proof, made = timed(lambda: reader.consistency_proof(old, new))
        _, checked = timed(lambda: verify_consistency(old, new, proof, roots[old], roots[new]))
        make.append(made)
        check.append(checked)
    total = [a + b for a, b in zip(make, check)]
    print(f"consistency {label:<26} generate {percentiles(make)} | verify {percentiles(check)} | both {percentiles(total)}")


def measure_route_answers(conn, cases: list[tuple[int, int]], roots: dict[int, bytes], label: str) -> None:
    """What GET /v1/proofs/inclusion asks of the store: root, leaf hash and proof from one size read and
    one statement (`TreeReader.inclusion`), without and with the app's tile cache (first call warms it)."""
    cache = TileCache()
    for name, make in (("no cache", lambda: TreeReader(conn)), ("tile cache", lambda: TreeReader(conn, cache))):
        times = []
        for index, size in cases:
            (root, leaf, proof), elapsed = timed(lambda: make().inclusion(index, size))
            verify_inclusion(index, size, leaf, proof, root)
            assert root == roots[size] and leaf == leaf_hash(b"leaf %d" % index)
            times.append(elapsed)
        print(f"inclusion() {label:<16} {name:<10} root + leaf + proof {percentiles(times)}")


def tree_bytes(conn) -> None:
    size = TreeReader(conn).size()
    pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat WHERE name IN ('tiles', 'tile_roots') GROUP BY name"))
    payload = conn.execute("SELECT (SELECT coalesce(sum(length(hashes)), 0) FROM tiles)"
                           " + (SELECT coalesce(sum(length(hash)), 0) FROM tile_roots)").fetchone()[0]
    total = sum(pages.values())
    print(f"tree storage: tiles {pages.get('tiles', 0):,} B + tile_roots {pages.get('tile_roots', 0):,} B"
          f" = {total / size:.2f} bytes/entry on disk (hash payload {payload / size:.2f} bytes/entry; target <= 48)")


def right_edge_alternative(conn, size: int) -> None:
    """What the level-1 right-edge tile would cost without `tile_roots`: hash every full level-0 tile under it."""
    count = size >> 8
    index, width = divmod(count, TILE_WIDTH)
    if not width:
        return
    _, from_roots = timed(lambda: read_tile(conn, TileID(1, index, width)))
    _, rebuilt = timed(lambda: [root_from_leaf_hashes(read_tile(conn, TileID(0, index * TILE_WIDTH + i)))
                                for i in range(width)])
    print(f"level-1 right-edge tile of width {width}: {from_roots / 1e6:.3f} ms from tile_roots,"
          f" {rebuilt / 1e6:.1f} ms if rebuilt from full level-0 tiles (not used)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--db", type=Path, help="store to build or reuse (default: a temporary file)")
    parser.add_argument("--samples", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.db or Path(scratch) / "proofs.sqlite"
        build(path, args.entries)
        conn = connect(path, readonly=True)
        reader = TreeReader(conn)
        size = args.entries
        rng = random.Random(1)
        older = [rng.randrange(1, size + 1) for _ in range(args.samples)]
        roots, root_times = {}, []
        for s in {size, *older}:
            roots[s], elapsed = timed(lambda: reader.root(s))
            root_times.append(elapsed)
        print(f"store {path}: {size:,} entries (of {reader.size():,} stored); {args.samples:,} samples each")
        print(f"root(size)                               {percentiles(root_times)}")
        measure_inclusion(reader, [(rng.randrange(size), size) for _ in range(args.samples)], roots, "random leaf, latest size")
        measure_inclusion(reader, [(rng.randrange(s), s) for s in older], roots, "random leaf, random size")
        measure_consistency(reader, [(s, size) for s in older], roots, "random old -> latest")
        pairs = [(a, b) for a, b in (sorted(rng.sample(older, 2)) for _ in range(args.samples))]
        measure_consistency(reader, pairs, roots, "random old -> random new")
        measure_route_answers(conn, [(rng.randrange(size), size) for _ in range(args.samples)], roots, "latest size")
        measure_route_answers(conn, [(rng.randrange(s), s) for s in older], roots, "random size")
        right_edge_alternative(conn, size)
        tree_bytes(conn)
        conn.close()


if __name__ == "__main__":
    main()

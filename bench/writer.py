"""CPU per event of batched ingest's two halves, in-process: the request parser
(`parse_events`) and the single writer thread (`Writer`), for 1,000-event requests shaped like
bench/ingest.py's batches (1,000 distinct runs per request, ~116-byte attrs with non-ASCII,
quotes and control characters). No HTTP: the figures say how far each half is from the
50,000 events/s target (~20 µs per event for the whole path).

Run: .venv/bin/python bench/writer.py [--passes 3] [--rounds 3] [--feed wire|events] [--profile]

Cases, each on a fresh store (synchronous=FULL, a temporary directory) first filled with
`--prefill` entries of 1,000 other runs (bench/ingest.py's store holds ~100,000-200,000 entries by
its batched case; what a commit writes grows with the store), then requests appended one at a time
(`append_sync`: one request per group commit, the least sharing), each request's events as
`runlog serve`'s primary gets them from a worker (`--feed wire`, the default: `WireEvent`s decoded
from the link's bytes) or as `parse_events` made them (`--feed events`: one process, no workers):
- known runs: bench/ingest.py's 20 batch bodies (2,000 runs x 10 steps, interleaved) posted
  `--passes` times: after the first two bodies every event extends a run the writer has seen;
- new runs: every request starts 1,000 runs nobody has seen (the writer looks each one up).
- sequencing: the writer's Python without SQLite, `Sequencer.extend` with the tile collector's
  visitor and `_group_rows`, on the known-run requests (`thread_time`).
Writer figures are the writer thread's own CPU clock (user + system, `pthread_getcpuclockid`)
divided by events; parse figures are `thread_time` around `parse_events` on the same bodies. The
prefill's parsed events are dropped as they are appended: a store's worth of live `Event`s (attrs
dicts and all) made every full garbage collection in the writer thread walk ~500,000 objects that
a server does not hold (session 6: known runs 29.1 µs per event with the collector, 23.9 without).
`--profile` prints cProfile's top functions for the writer thread in the known-runs case.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import BATCH, make_events  # noqa: E402  (bench/ingest.py: the same bodies)

from appliance.core.keys import generate_signer  # noqa: E402
from appliance.core.sequencer import Sequencer  # noqa: E402
from appliance.store.tiles import TileCollector  # noqa: E402
from appliance.store.writer import AppendRequest, Writer, _group_rows  # noqa: E402
from appliance.web.ingest import parse_events  # noqa: E402
from appliance.workers.wire import request_body, request_from  # noqa: E402

SOURCE = "bench"


def body_of(events: list[dict]) -> bytes:
    return json.dumps(events, ensure_ascii=False, separators=(",", ":")).encode()


def known_run_bodies() -> list[bytes]:
    events = make_events(2000, 10, seed=2)
    return [body_of(events[i:i + BATCH]) for i in range(0, len(events), BATCH)]


def new_run_bodies(requests: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    bodies = []
    for _ in range(requests):
        events = make_events(BATCH, 1, seed=rng.getrandbits(32))
        bodies.append(body_of(events))
    return bodies


def parse(body: bytes):
    return parse_events(body, "application/json", {}, SOURCE, max_batch=BATCH)


def parse_cpu(bodies: list[bytes]) -> float:
    """µs of CPU per event for parsing `bodies` once each."""
    started = time.thread_time()
    events = sum(len(parse(body).events) for body in bodies)
    return (time.thread_time() - started) / events * 1e6


def request_of(body: bytes, feed: str) -> AppendRequest:
    request = AppendRequest(parse(body).events, SOURCE)
    return request_from(request_body(request)) if feed == "wire" else request


def prefill_bodies(entries: int) -> list[bytes]:
    events = make_events(1000, max(1, entries // 1000), seed=1)[:entries]
    return [body_of(events[i:i + BATCH]) for i in range(0, len(events), BATCH)]


def writer_cpu(bodies: list[bytes], passes: int, prefill: list[bytes], feed: str,
               profile: bool = False) -> tuple[float, float, str]:
    """(writer µs of CPU per event, events/s of wall time, profile text) for appending the parsed
    `bodies` `passes` times to a fresh store holding `prefill`."""
    requests = [request_of(body, feed) for body in bodies]
    with tempfile.TemporaryDirectory(prefix="runlog-writer-bench-") as work:
        writer = Writer(Path(work) / "runlog.sqlite", origin="bench.example/log",
                        signer=generate_signer("bench.example/log"))
        writer.start()
        for body in prefill:
            writer.append_sync(request_of(body, feed))
        profiler = cProfile.Profile() if profile else None
        if profiler is not None:  # enabled and disabled in the writer thread itself
            writer.on_commit = lambda _: profiler.enable()
            writer.append_sync(requests[0])
        try:
            clock = time.pthread_getcpuclockid(writer._thread.ident)  # type: ignore[union-attr]
            cpu, wall = time.clock_gettime(clock), time.perf_counter()
            events = 0
            for _ in range(passes):
                for request in requests:
                    events += len(writer.append_sync(request).entry_hashes)
            cpu, wall = time.clock_gettime(clock) - cpu, time.perf_counter() - wall
            text = ""
            if profiler is not None:
                writer.on_commit = lambda _: profiler.disable()
                writer.append_sync(request_of(new_run_bodies(1, seed=99)[0], feed))
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(18)
                text = out.getvalue()
        finally:
            writer.stop()
    return cpu / events * 1e6, events / wall, text


def sequencing_cpu(bodies: list[bytes], passes: int, feed: str) -> float:
    """µs of CPU per event for the writer's sequencing and row building alone (no SQLite): a
    `Sequencer` with the tile collector's visitor, then `_group_rows`, one request at a time."""
    requests = [request_of(body, feed).events for body in bodies]
    heads: dict = {}
    sequencer, tiles = Sequencer(heads.get), TileCollector()
    cpu, events = 0.0, 0
    for _ in range(passes):
        for request in requests:
            started = time.thread_time()
            appended, touched = sequencer.extend(request, "2026-11-28T22:00:00.123456Z", tiles.on_node)
            for rows in _group_rows(appended, touched):
                deque(rows, maxlen=0)  # rows may be generated as executemany binds them
            cpu += time.thread_time() - started
            heads.update(touched)
            events += len(request)
    return cpu / events * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=3, help="passes over the 20 known-run bodies per round")
    parser.add_argument("--new-requests", type=int, default=20, help="requests of 1,000 new runs per round")
    parser.add_argument("--prefill", type=int, default=100_000, help="entries in the store before each case")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (all printed, best last)")
    parser.add_argument("--feed", choices=["wire", "events"], default="wire",
                        help="the writer's events as a worker sends them (default) or as the parser makes them")
    parser.add_argument("--profile", action="store_true", help="cProfile the writer thread (known runs)")
    args = parser.parse_args(argv)

    print(f"runlog writer/parser bench: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {' / '.join(f'{x:.2f}' for x in os.getloadavg())}, feed {args.feed}", flush=True)
    known = known_run_bodies()
    fresh = new_run_bodies(args.new_requests, seed=5)
    prefill = prefill_bodies(args.prefill)
    cases = [("parse, bench batches", lambda: (parse_cpu(known), None)),
             ("sequencing (no SQL)", lambda: (sequencing_cpu(known, args.passes, args.feed), None)),
             ("writer, known runs", lambda: writer_cpu(known, args.passes, prefill, args.feed)[:2]),
             ("writer, new runs", lambda: writer_cpu(fresh, 1, prefill, args.feed)[:2])]
    for name, measure in cases:
        figures = [measure() for _ in range(args.rounds)]
        per_event = ", ".join(f"{us:.1f}" for us, _ in figures)
        rates = [rate for _, rate in figures if rate is not None]
        wall = f"; wall {max(rates):,.0f} events/s" if rates else ""
        print(f"  {name:<22} µs CPU/event: {per_event} (best {min(us for us, _ in figures):.1f}){wall}", flush=True)
    if args.profile:
        print(writer_cpu(known, args.passes, prefill, args.feed, profile=True)[2])
    print(f"  load at the end {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

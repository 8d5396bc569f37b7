"""CPU per single-event `POST /v1/events` in the web layer, in-process: the real app driven through
ASGI with no HTTP server, so what is left is Litestar, our handlers, middleware and the writer.

Run: .venv/bin/python bench/request_cpu.py [--requests 3000] [--rounds 5] [--clients 32] [--profile N]
     [--loop auto|asyncio|uvloop] [--batch 1000]

- runlog: `create_app` over a real appliance in a temporary directory (init, an append-scope
  token, request lines written as JSON as `runlog serve` writes them to stderr, here to /dev/null).
  The store runs with synchronous=NORMAL here (no fsync per commit: this measures CPU, not the
  disk); every other setting is the default.
- bare: the bench/ingest.py ceiling (a Litestar POST route that reads the body and answers 201
  `{"ok":true}`) through the same harness.
`--clients` callers (asyncio tasks on one loop) each send their share of `--requests` requests
with the headers wrk sends (Host, Content-Length, Content-Type, Authorization) and bench/ingest.py's
event bodies. Figures per request, median (and min) of `--rounds` rounds after a warm-up round:
event-loop thread CPU (`time.thread_time`), the writer thread's CPU, and process CPU.
Both run on the event loop `--loop` names (RUNLOG_LOOP's choices; default auto: uvloop when
installed). `--profile N` prints cProfile's top N functions (by own time) of the event-loop thread for one
more runlog round. `--batch N` sends N events per request instead (a JSON array, bench/ingest.py's
batched shape: runs interleaved, 2,000 of them) and gives the figures per event as well: the event
loop then pays what an HTTP worker pays for a batch (body, parse, answer) and the writer thread
what the primary's does, minus the link between them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest import make_events  # noqa: E402  (the same bodies as the HTTP bench)

from appliance import logs  # noqa: E402
from appliance.core.timefmt import format_utc  # noqa: E402
from appliance.loops import LOOPS, resolved  # noqa: E402
from appliance.loops import run as run_on  # noqa: E402
from appliance.service import init_appliance  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.store.db import connect  # noqa: E402
from appliance.store.tokens import create_token  # noqa: E402
from appliance.web.app import create_app  # noqa: E402


def bare_app() -> Any:
    from litestar import Litestar, Request, post

    @post("/v1/events", status_code=201)
    async def events(request: Request) -> dict[str, bool]:
        await request.body()
        return {"ok": True}

    return Litestar(route_handlers=[events], debug=False)


def make_token(settings: Settings) -> str:
    from datetime import datetime, timezone

    conn = connect(settings.db_path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        secret, _ = create_token(conn, "bench", ["append"], now=format_utc(datetime.now(timezone.utc)))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return secret


class Lifespan:
    """The ASGI lifespan protocol, driven by hand: `await start()`, later `await stop()`."""

    def __init__(self, app: Any) -> None:
        self.app, self.inbox, self.outbox = app, asyncio.Queue(), asyncio.Queue()

    async def start(self) -> None:
        self.task = asyncio.create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                                 self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan start-up failed: {message}")

    async def stop(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.task


def scope_for(body: bytes, token: str) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-length", str(len(body)).encode()),
               (b"content-type", b"application/json"), (b"authorization", b"Bearer " + token.encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000), "scheme": "http", "method": "POST",
            "root_path": "", "path": "/v1/events", "raw_path": b"/v1/events", "query_string": b"",
            "headers": headers, "state": {}}


async def one_request(app: Any, body: bytes, token: str) -> int:
    sent_body = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # as uvicorn: nothing more until the client disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(body, token), receive, send)
    return status


async def one_round(app: Any, bodies: list[bytes], token: str, clients: int, expected: set[int]) -> None:
    async def caller(share: list[bytes]) -> None:
        for body in share:
            status = await one_request(app, body, token)
            if status not in expected:
                raise RuntimeError(f"answered {status}, expected {sorted(expected)}")

    await asyncio.gather(*(caller(bodies[c::clients]) for c in range(clients)))


def _callgrind(switch: str | int) -> None:
    """Under `valgrind --tool=callgrind --instr-atstart=no`, count instructions only in the
    measured rounds: a figure other work on the machine does not move (env RUNLOG_BENCH_CALLGRIND=1)."""
    if switch and os.environ.get("RUNLOG_BENCH_CALLGRIND"):
        subprocess.run(["callgrind_control", "--instr=" + str(switch), str(os.getpid())], check=True,
                       capture_output=True)


def _thread_cpu(name: str) -> float:
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return 0.0


async def measure(app: Any, bodies: list[list[bytes]], token: str, clients: int, expected: set[int],
                  profile: cProfile.Profile | None = None) -> list[dict[str, float]]:
    """One figure set per round of `bodies` (the first round is a warm-up, not reported)."""
    lifespan = Lifespan(app)
    await lifespan.start()
    figures = []
    try:
        for index, round_bodies in enumerate(bodies):
            loop0, writer0, process0 = time.thread_time(), _thread_cpu("runlog-writer"), time.process_time()
            wall0 = time.perf_counter()
            profiled = profile is not None and index == len(bodies) - 1
            if profiled:
                profile.enable()
            _callgrind(index and "on")
            await one_round(app, round_bodies, token, clients, expected)
            _callgrind(index and "off")
            if profiled:
                profile.disable()
            n = len(round_bodies)
            if index and not profiled:
                figures.append({"loop": (time.thread_time() - loop0) / n * 1e6,
                                "writer": (_thread_cpu("runlog-writer") - writer0) / n * 1e6,
                                "process": (time.process_time() - process0) / n * 1e6,
                                "wall": (time.perf_counter() - wall0) / n * 1e6})
    finally:
        await lifespan.stop()
    return figures


def summary(name: str, figures: list[dict[str, float]], per: int = 1) -> str:
    def cell(key: str) -> str:
        values = [f[key] / per for f in figures]
        return f"{statistics.median(values):7.1f} (min {min(values):6.1f})"

    return f"  {name:8} event loop {cell('loop')}  writer {cell('writer')}  process {cell('process')}  wall {cell('wall')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N of a profiled round")
    parser.add_argument("--only", choices=("runlog", "bare"))
    parser.add_argument("--loop", choices=LOOPS, default="auto")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="events per request (a JSON array when > 1)")
    args = parser.parse_args()

    rounds = args.rounds + 1 + (1 if args.profile else 0)  # warm-up first, profiled round last
    total = args.requests * rounds * args.batch
    if args.batch > 1:
        events = make_events(runs=2000, steps=-(-total // 2000), seed=3)
        encoded = [json.dumps(events[i:i + args.batch], ensure_ascii=False, separators=(",", ":")).encode()
                   for i in range(0, total, args.batch)]
    else:
        events = make_events(runs=1000, steps=-(-total // 1000), seed=3)
        encoded = [json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in events[:total]]
    bodies = [encoded[r * args.requests:(r + 1) * args.requests] for r in range(rounds)]
    shape = f"{args.batch:,}-event" if args.batch > 1 else "single-event"
    print(f"{args.requests:,} {shape} POST /v1/events per round, {args.clients} concurrent callers, "
          f"{args.rounds} rounds after a warm-up, {resolved(args.loop)} loop; µs of CPU per request, median (min); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    with tempfile.TemporaryDirectory() as folder, open(os.devnull, "w") as log_file:
        settings = Settings(data_dir=Path(folder) / "data", keys_dir=Path(folder) / "data" / "keys",
                            synchronous="NORMAL")
        init_appliance(settings)
        token = make_token(settings)
        profile = cProfile.Profile() if args.profile else None
        results = {}
        if args.only != "bare":
            app = create_app(settings)
            logs.configure_logging(stream=log_file)
            results["runlog"] = run_on(measure(app, bodies, token, args.clients, {201}, profile), args.loop)
        if args.only != "runlog":
            results["bare"] = run_on(measure(bare_app(), bodies[:args.rounds + 1], token, args.clients, {201}),
                                     args.loop)
        for name, figures in results.items():
            print(summary(name, figures))
            if args.batch > 1:
                print(summary("per event", figures, args.batch))
        if "runlog" in results and "bare" in results:
            loop = statistics.median(f["loop"] for f in results["runlog"])
            bare = statistics.median(f["loop"] for f in results["bare"])
            print(f"  event loop: runlog - bare = {loop - bare:.1f} µs per request")
        if profile is not None:
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.profile)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())

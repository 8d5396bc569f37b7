"""The floor of runlog's ingest architecture, beside the bare endpoint and runlog itself.

    python bench/skeleton.py               # 10 s per case, interleaved rounds
    python bench/skeleton.py --quick       # the CI smoke test

The *skeleton* is `runlog serve`'s shape with none of runlog's own work: HTTP worker processes
(uvicorn as `runlog serve` configures it, one SO_REUSEPORT socket each) forward each request's raw
body over the appliance's real worker link (appliance.workers.link) to a primary process whose
single writer thread commits the queued bodies in groups (one `BEGIN IMMEDIATE` ... `COMMIT` per
group, WAL, synchronous=FULL) and answers each request only once its group is durable. No
parsing, no authentication, no request log, no hash chain, no Merkle tree, no receipt.

Two skeletons: the request answered in plain ASGI (as runlog's ingest fast path answers it) and
through a Litestar route (as the bare endpoint does). bench/ingest.py's targets compare runlog
with the bare endpoint; this says how much of the gap the architecture itself costs (the link
hop, the group commit, the fsync) and how much is runlog's per-request work. Figures are req/s
and server CPU per request (all processes, /proc), with the same wrk load and bodies as
bench/ingest.py, each case run `--rounds` times, interleaved.
"""

import argparse
import asyncio
import os
import queue
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import ingest  # noqa: E402  (bench/ingest.py: servers, bodies, load, CPU)

_ANSWER = b'{"ok":true}'


class GroupWriter:
    """One thread, one connection: queued bodies committed in groups, each future resolved (on its
    event loop) after its group's COMMIT returned."""

    def __init__(self, db_path: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS bodies (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        threading.Thread(target=self._run, name="skeleton-writer", daemon=True).start()

    def enqueue(self, body: bytes) -> "asyncio.Future[bool]":
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put((body, future))
        return future

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while True:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT INTO bodies (body) VALUES (?)", [(body,) for body, _ in group])
            self._conn.execute("COMMIT")
            group[0][1].get_loop().call_soon_threadsafe(_settle, [future for _, future in group])


def _settle(futures: list["asyncio.Future[bool]"]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(True)


def _asgi_app(append: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        if scope["path"] == "/v1/events":
            await append(body)
            status, answer = 201, _ANSWER
        else:
            status, answer = 200, b'{"status":"ok"}'
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})

    return app


def _litestar_app(append: Any) -> Any:
    from litestar import Litestar, Request, get, post

    @post("/v1/events", status_code=201)
    async def events(request: Request) -> dict[str, bool]:
        await append(await request.body())
        return {"ok": True}

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar(route_handlers=[events, healthz], debug=False)


def serve_skeleton(port: int, workers: int, route: str, db_path: str) -> None:
    """The skeleton on `port`: `workers` HTTP processes and this process as the primary."""
    import uvicorn
    import uvloop

    from appliance.listen import bind_sockets
    from appliance.workers.link import Later, Peer, abstract_address, connect

    address = abstract_address(f"runlog-skeleton-{os.getpid()}")
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.bind(address)
    link.listen(64)
    children = []
    for sock in bind_sockets("127.0.0.1", port, workers):
        pid = os.fork()
        if pid == 0:
            link.close()
            peer: list[Peer] = []

            async def append(body: bytes) -> None:
                if not peer:
                    peer.append((await connect(lambda: Peer({}), address))[1])
                await peer[0].call("append", body)

            app = _asgi_app(append) if route == "asgi" else _litestar_app(append)
            config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="on", loop="uvloop")
            uvicorn.Server(config).run(sockets=[sock])
            os._exit(0)
        sock.close()
        children.append(pid)

    def stop(*_: Any) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)

    async def primary() -> None:
        writer = GroupWriter(db_path)
        handlers = {"append": lambda body: Later(writer.enqueue(body), lambda done: done)}
        await asyncio.get_running_loop().create_unix_server(lambda: Peer(handlers), sock=link)
        await asyncio.Event().wait()

    uvloop.install()
    asyncio.run(primary())


def skeleton_server(work: Path, route: str, workers: int, log_path: Path) -> ingest.Served:
    port = ingest.free_port()
    db_path = work / f"skeleton-{route}-{port}.sqlite"
    server = ingest.Served([sys.executable, str(Path(__file__).resolve()), "--serve", str(port), "--workers",
                            str(workers), "--route", route, "--db", str(db_path)], dict(os.environ), port, log_path)
    server.db_path = db_path  # type: ignore[attr-defined]
    return server


def run(args: argparse.Namespace, work: Path) -> dict[str, list[dict[str, float]]]:
    seconds = 1.0 if args.quick else args.seconds
    workers = args.workers or ingest.default_workers()
    bodies = ingest.write_bodies(work / "single.jsonl", ingest.make_events(1000, 10, seed=1))
    load = ingest.wrk_load if shutil.which("wrk") else ingest.python_load
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"ingest skeleton bench, {now}: {os.cpu_count()} cores, load {ingest._load_avg()}, {workers} worker "
          f"processes, {args.clients} clients, {seconds:g} s per case, {args.rounds} round(s); "
          f"disk {ingest.fsync_probe(work):,.0f} SQLite commits/s", flush=True)
    runlog = ingest.runlog_server(work / "data", work / "runlog.log", workers)
    cases = [("bare Litestar", ingest.bare_server(work / "bare.log", workers)),
             ("skeleton, plain ASGI", skeleton_server(work, "asgi", workers, work / "skeleton-asgi.log")),
             ("skeleton, Litestar route", skeleton_server(work, "litestar", workers, work / "skeleton-litestar.log")),
             ("runlog serve", runlog)]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in cases}
    try:
        for _, server in cases:
            server.spawn()
        for _, server in cases:
            server.wait_healthy()
        token = subprocess.run([sys.executable, "-m", "appliance.cli", "token", "create", "bench", "--scopes", "append"],
                               env=runlog.env, cwd=runlog.cwd, capture_output=True, text=True, check=True).stdout.strip()
        for _ in range(args.rounds):
            for name, server in cases:
                measured = ingest._measured(server, load, "/v1/events", token, bodies, args.clients, seconds)
                cpu = None if measured.cpu_seconds is None else measured.cpu_seconds * 1e6 / max(measured.ok, 1)
                results[name].append({"requests_per_s": measured.rate, "cpu_us_per_request": cpu or 0.0,
                                      "errors": measured.errors})
                print(f"  {name:<26} {measured.rate:>9,.0f} req/s   server CPU {cpu or 0:>6.1f} µs/request   "
                      f"errors {measured.errors}", flush=True)
    finally:
        for _, server in cases:
            server.stop()
    for name, server in cases:
        if hasattr(server, "db_path"):
            with sqlite3.connect(server.db_path) as conn:
                stored = conn.execute("SELECT count(*) FROM bodies").fetchone()[0]
            answered = sum(round(r["requests_per_s"] * seconds) for r in results[name])
            print(f"  {name}: {stored:,} bodies stored (~{answered:,} answered)")
    bare = _median([r["requests_per_s"] for r in results["bare Litestar"]])
    print(f"medians over {args.rounds} round(s), share of the bare endpoint's req/s:")
    for name, rows in results.items():
        rate, cpu = _median([r["requests_per_s"] for r in rows]), _median([r["cpu_us_per_request"] for r in rows])
        print(f"  {name:<26} {rate:>9,.0f} req/s  {rate / bare:>5.0%}   {cpu:>6.1f} µs/request")
    return results


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each case (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all cases, interleaved (default 3)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--workers", type=int, help="HTTP worker processes (default: runlog serve's default)")
    parser.add_argument("--quick", action="store_true", help="1 s per case: a smoke test, not a figure")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--route", choices=["asgi", "litestar"], default="asgi", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_skeleton(args.serve, args.workers or 2, args.route, args.db)
        return 0
    with tempfile.TemporaryDirectory(prefix="runlog-bench-skeleton-") as work:
        run(args, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest figures, side by side in one run (issue 3, "Figures"; targets in DESIGN.md).

    python bench/ingest.py                 # 3 rounds of ~10 s per case, medians: ~8 minutes
    python bench/ingest.py --rounds 1      # one round: ~2.5 minutes, not evidence for a comparison
    python bench/ingest.py --quick         # 0.5-1 s per case, one round: the CI smoke test
    python bench/ingest.py --seconds 20 --generator python

Cases, interleaved so that drifting machine load hits both sides of each comparison alike, every
case once per round and the figures the medians over the rounds (the VM swings ±15-25% within
minutes):
- a bare Litestar POST endpoint (same uvicorn settings as `runlog serve`) and `runlog serve`
  (synchronous=FULL: acknowledged only when durable), one event per request, 1/8/32 clients;
- `runlog serve` with 1,000 events per request, 4 and 8 clients (the target takes the better: a
  request waits in a worker's parse while the single writer may idle, and 4 clients leave it idle),
  from bodies of `--batch-runs` runs of 10 steps, interleaved;
- the seed's Postgres design (bench/seed_postgres.sql), correct and bigserial variants, one row
  per transaction, fed the same events by 1/8 client processes; forks counted in both.
Each round serves a new runlog store (what a commit writes grows with the store); afterwards each
store's chain is verified with the core (forks counted the same way), and a sample of its stored
entries is checked to be exactly `rfc8785.dumps` of their decoded JSON.

Load comes from `wrk` (Debian package) with bench/wrk/post.lua when installed, otherwise from
client processes with plain keep-alive HTTP/1.1 connections on asyncio; the same generator drives
runlog and the bare endpoint.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
BATCH = 1000
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A server subprocess on 127.0.0.1 that answers GET /healthz; stopped with SIGTERM."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log_path: Path, cwd: Path | None = None) -> None:
        self.argv, self.env, self.port, self.log_path, self.cwd = argv, env, port, log_path, cwd
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    def start(self, timeout: float = 60.0) -> "Served":
        return self.spawn().wait_healthy(timeout)

    def spawn(self) -> "Served":
        self._spawned = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> "Served":
        """Wait for GET /healthz to answer 200; `startup_seconds` counts from the spawn."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.argv} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    self.startup_seconds = time.perf_counter() - self._spawned
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.argv} did not become healthy in {timeout:.0f} s: {self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server and its worker processes have used so far (Linux
        /proc), or None. A worker that exited takes its time with it: compare runs without restarts."""
        if self.process is None:
            return None
        total, pending = 0, [self.process.pid]
        while pending:
            pid = pending.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                if pid == self.process.pid:
                    return None
                continue
            total += int(fields[11]) + int(fields[12])
            pending += [int(child) for child in children]
        return total / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def runlog_server(data_dir: Path, log_path: Path, workers: int | None = None, loop: str | None = None) -> Served:
    """`runlog serve` on a free port, not yet started; `workers` sets RUNLOG_WORKERS, `loop` RUNLOG_LOOP."""
    port = free_port()
    # Every other setting at its default; among them synchronous=FULL: acknowledged only when durable.
    env = {name: value for name, value in os.environ.items() if not name.startswith("RUNLOG_")}
    env.update(RUNLOG_DATA_DIR=str(data_dir), RUNLOG_HOST="127.0.0.1", RUNLOG_PORT=str(port),
               RUNLOG_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONPATH=str(BENCH.parent))
    if workers is not None:
        env["RUNLOG_WORKERS"] = str(workers)
    if loop is not None:
        env["RUNLOG_LOOP"] = loop
    # `python -m` puts the working directory first on sys.path, before PYTHONPATH: run from this
    # checkout, so that a bench started from another checkout (an A/B from a worktree) serves this one's code.
    return Served([sys.executable, "-m", "appliance.cli", "serve"], env, port, log_path, cwd=BENCH.parent)


def default_workers() -> int:
    """The HTTP worker processes `runlog serve` runs with its defaults on this machine."""
    from appliance.settings import Settings

    return Settings.from_env({}).workers


def serve_bare(port: int, workers: int = 1, loop: str = "auto") -> None:
    """The ceiling: a Litestar POST route that reads the body and answers 201 with a small JSON
    object, under uvicorn configured as `runlog serve` configures it: on the same event loop
    (RUNLOG_LOOP's `loop`), with several workers one process per worker on its own SO_REUSEPORT
    socket, as appliance.workers.supervisor binds them."""
    if workers > 1:
        from appliance.listen import bind_sockets

        children = []
        for sock in bind_sockets("127.0.0.1", port, workers):
            pid = os.fork()
            if pid == 0:
                _serve_bare_app(sock, loop=loop)
                os._exit(0)
            children.append(pid)
        signal.signal(signal.SIGTERM, lambda *_: [os.kill(child, signal.SIGTERM) for child in children])
        for child in children:
            os.waitpid(child, 0)
        return
    _serve_bare_app(None, port, loop)


def _serve_bare_app(sock: socket.socket | None, port: int = 0, loop: str = "auto") -> None:
    import uvicorn
    from appliance.loops import resolved
    from litestar import Litestar, Request, get, post

    @post("/v1/events", status_code=201)
    async def events(request: Request) -> dict[str, bool]:
        await request.body()
        return {"ok": True}

    @get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app = Litestar(route_handlers=[events, healthz], debug=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning",
                                           lifespan="on", loop=resolved(loop)))
    server.run(sockets=[sock] if sock is not None else None)


def bare_server(log_path: Path, workers: int = 1, loop: str = "auto") -> Served:
    """The bare endpoint on a free port with `workers` processes on event loop `loop`, not yet started."""
    port = free_port()
    return Served([sys.executable, str(Path(__file__).resolve()), "--bare-server", str(port),
                   "--bare-workers", str(workers), "--loop", loop], dict(os.environ), port, log_path)


# -- events ------------------------------------------------------------------------------------

_WORDS = ["fetch", "transform", "upload", "notify", "retry", "café", "naïve → ok", 'quote "x"', "tab\tand\nline"]


def make_events(runs: int, steps: int, seed: int) -> list[dict]:
    """`runs * steps` info events, runs interleaved (event i belongs to run i % runs), with the
    kinds of strings RFC 8785 treats specially (non-ASCII, quotes, control characters)."""
    rng = random.Random(seed)
    trace_ids = [f"{rng.getrandbits(128) | 1:032x}" for _ in range(runs)]
    events = []
    for i in range(runs * steps):
        run = i % runs
        events.append({"trace_id": trace_ids[run], "step": f"step-{i // runs}-{rng.choice(_WORDS[:5])}",
                       "status": "info",
                       "attrs": {"host": f"runner-{run % 16}", "attempt": 1, "duration_ms": rng.randint(1, 90_000),
                                 "message": f"{rng.choice(_WORDS)} {rng.getrandbits(64):x}",
                                 "tags": ["bench", rng.choice(_WORDS[:4])]}})
    return events


def write_bodies(path: Path, bodies: list) -> Path:
    path.write_text("".join(json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n" for body in bodies),
                    encoding="utf-8")
    return path


# -- load generators ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One case's outcome: `ok` answers with a 2xx status in `seconds`, `errors` the rest;
    `cpu_seconds` the server process's CPU time meanwhile, when known."""

    ok: int
    errors: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _wrk_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()
    return float(number) * _WRK_UNITS[unit]


def wrk_load(url: str, target: str, token: str, bodies: Path, clients: int, seconds: float) -> Load:
    """wrk with one thread (C, epoll): it leaves the most CPU to the server on a 2-core machine."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "--latency",
         "-s", str(BENCH / "wrk" / "post.lua"), url, "--", str(bodies), token, target],
        capture_output=True, text=True, check=True).stdout
    total, elapsed = re.search(r"(\d+) requests in ([0-9.]+[a-z]+),", out).groups()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    percentile = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return Load(int(total) - (int(bad.group(1)) if bad else 0), errors, _wrk_ms(elapsed) / 1e3,
                _wrk_ms(percentile["50"]) if "50" in percentile else None,
                _wrk_ms(percentile["99"]) if "99" in percentile else None)


async def _http_connection(host: str, port: int, requests: list[bytes], offset: int, step: int, deadline: float,
                           counts: list[int], latencies: list[float]) -> None:
    """One keep-alive HTTP/1.1 connection sending prebuilt requests until `deadline`. Our servers
    answer with Content-Length, so reading a response is its head and that many bytes."""
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.time() < deadline:
            sent = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            latencies.append((time.perf_counter() - sent) * 1e3)
            counts[0 if head[9:10] == b"2" else 1] += 1
            i += step
    finally:
        writer.close()


def _python_worker(url: str, target: str, token: str, bodies: list[bytes], connections: int, offset: int,
                   start_at: float, seconds: float, out) -> None:
    import asyncio
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    requests = [(f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
                for body in bodies]
    counts, latencies = [0, 0], []

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(_http_connection(parts.hostname, parts.port, requests, offset + k, connections,
                                                start_at + seconds, counts, latencies)
                               for k in range(connections)))

    asyncio.run(main())
    out.put((counts[0], counts[1], time.time() - start_at, latencies))


def python_load(url: str, target: str, token: str, bodies: Path, clients: int, seconds: float) -> Load:
    """Up to one process per core, each running its share of the clients as asyncio connections."""
    import multiprocessing

    lines = [line.encode() for line in bodies.read_text(encoding="utf-8").splitlines() if line]
    processes = min(clients, os.cpu_count() or 1)
    shares = [clients // processes + (1 if p < clients % processes else 0) for p in range(processes)]
    out = multiprocessing.Queue()
    start_at = time.time() + 0.5
    workers = [multiprocessing.Process(target=_python_worker,
                                       args=(url, target, token, lines, share, p * 997, start_at, seconds, out))
               for p, share in enumerate(shares)]
    for worker in workers:
        worker.start()
    results = [out.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(ms for *_, lat in results for ms in lat)
    return Load(sum(r[0] for r in results), sum(r[1] for r in results), max(r[2] for r in results),
                latencies[len(latencies) // 2] if latencies else None,
                latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None)


# -- the seed's Postgres design ------------------------------------------------------------------


def _sql_sections() -> dict[str, str]:
    sections: dict[str, str] = {}
    name = None
    for line in (BENCH / "seed_postgres.sql").read_text().splitlines(keepends=True):
        marker = re.match(r"-- @(?:variant )?(\w+)\s*$", line)
        if marker:
            name = marker.group(1)
            sections[name] = ""
        elif name is not None:
            sections[name] += line
    return sections


class SeedDesign:
    """One variant of bench/seed_postgres.sql in its own schema, with its own application role."""

    def __init__(self, dsn: str, variant: str) -> None:
        import psycopg

        self.dsn, self.variant = dsn, variant
        tag = f"{variant}_{os.getpid()}"
        self.schema, self.role = f"bench_seed_{tag}", f"bench_seed_app_{tag}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            crypto = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                                  "WHERE extname = 'pgcrypto'").fetchone()
            if crypto is None:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
                crypto = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension "
                                      "WHERE extname = 'pgcrypto'").fetchone()
            sections = _sql_sections()
            self._names = {"schema": self.schema, "role": self.role, "crypto": crypto[0],
                           "lock_key": str(random.getrandbits(62))}
            self._forks_sql = sections["forks"].format(**self._names)
            conn.execute(f"CREATE ROLE {self.role} NOLOGIN")
            conn.execute((sections[variant] + sections["common"]).format(**self._names))

    def insert_sql(self) -> str:
        return f"INSERT INTO {self.schema}.run_log (trace_id, step, status, attrs) VALUES (%s, %s, %s, %s::jsonb)"

    def refuses_update_and_delete(self) -> bool:
        """The application role can insert and read, but not update or delete (grants, RLS)."""
        import psycopg

        refused = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"SET ROLE {self.role}")
            for statement in (f"UPDATE {self.schema}.run_log SET step = 'edited'", f"DELETE FROM {self.schema}.run_log"):
                try:
                    conn.execute(statement)
                except psycopg.errors.InsufficientPrivilege:
                    refused += 1
        return refused == 2

    def rows_and_forks(self) -> tuple[int, int]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(f"SELECT count(*) FROM {self.schema}.run_log").fetchone()[0]
            return rows, conn.execute(self._forks_sql).fetchone()[0]

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            conn.execute(f"DROP ROLE IF EXISTS {self.role}")


def _pg_client(dsn: str, role: str, sql: str, rows: list[tuple], offset: int, start_at: float, seconds: float,
               out) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:  # autocommit: one row per transaction
        conn.execute(f"SET ROLE {role}")
        cursor = conn.cursor()
        time.sleep(max(0.0, start_at - time.time()))
        deadline, done = start_at + seconds, 0
        while time.time() < deadline:
            cursor.execute(sql, rows[(offset + done) % len(rows)], prepare=True)
            done += 1
        out.put((done, time.time() - start_at))


def pg_load(design: SeedDesign, events: list[dict], clients: int, seconds: float) -> Load:
    """`clients` processes, one connection each, inserting the events one per transaction."""
    import multiprocessing

    rows = [(e["trace_id"], e["step"], e["status"], json.dumps(e["attrs"], ensure_ascii=False)) for e in events]
    out = multiprocessing.Queue()
    start_at = time.time() + 0.5
    workers = [multiprocessing.Process(target=_pg_client, args=(design.dsn, design.role, design.insert_sql(), rows,
                                                                 c * len(rows) // clients, start_at, seconds, out))
               for c in range(clients)]
    for worker in workers:
        worker.start()
    results = [out.get() for _ in workers]
    for worker in workers:
        worker.join()
    return Load(sum(r[0] for r in results), 0, max(r[1] for r in results))


def postgres_reachable(dsn: str) -> str | None:
    """None if the DSN answers, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return f"{dsn} is not reachable: {str(error).strip()[:120]}"
    return None


# -- checks on the runlog store ----------------------------------------------------------------


@dataclass(frozen=True)
class StoreCheck:
    entries: int
    forks: int  # entries whose prev is not the recorded hash of the entry before
    verified: str  # "ok", or the core verifier's error
    verify_per_second: float
    sampled: int
    not_rfc8785: int  # sampled entries whose bytes differ from rfc8785.dumps(json.loads(bytes))


def check_store(db_path: Path, sample_from: int, sample_size: int, seed: int = 7) -> StoreCheck:
    """Count forks, verify the whole chain with the core, and compare a sample of entries from
    `sample_from` on with `rfc8785.dumps` of their decoded JSON (and `decode_entry`)."""
    import rfc8785

    from appliance.core.chain import RunChains, verify_global_chain
    from appliance.core.entry import decode_entry
    from appliance.core.errors import RunlogError

    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        forks, previous, size = 0, None, 0
        for data, digest in conn.execute("SELECT data, hash FROM entries ORDER BY seq"):
            if json.loads(data)["prev"] != (previous.hex() if previous is not None else None):
                forks += 1
            previous, size = bytes(digest), size + 1
        started = time.perf_counter()
        try:
            rows = ((bytes(d), bytes(h)) for d, h in conn.execute("SELECT data, hash FROM entries ORDER BY seq"))
            head = verify_global_chain(rows, runs=RunChains())
            verified = "ok" if head.size == size else f"verified {head.size} of {size} entries"
        except RunlogError as error:
            verified = f"{type(error).__name__}: {error}"
        rate = size / max(time.perf_counter() - started, 1e-9)
        rng = random.Random(seed)
        seqs = rng.sample(range(sample_from, size), min(sample_size, size - sample_from)) if size > sample_from else []
        mismatches = 0
        for seq in seqs:
            data = bytes(conn.execute("SELECT data FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
            try:
                decode_entry(data)
                same = rfc8785.dumps(json.loads(data)) == data
            except (RunlogError, ValueError):
                same = False
            mismatches += not same
    finally:
        conn.close()
    return StoreCheck(size, forks, verified, rate, len(seqs), mismatches)


def fsync_probe(directory: Path, seconds: float = 1.0) -> float:
    """SQLite commits/s, one row per transaction, WAL + synchronous=FULL: how busy the disk is now."""
    path = directory / "fsync-probe.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (data) VALUES (?)", (b"x" * 300,))
        conn.execute("COMMIT")
        done += 1
    rate = done / (time.perf_counter() - started)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return rate


# -- the run -----------------------------------------------------------------------------------


def _load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _line(name: str, clients: int, load: Load, events_per_request: int, before: str) -> str:
    latency = (f"p50 {load.p50_ms:7.2f} ms  p99 {load.p99_ms:7.2f} ms"
               if load.p50_ms is not None and load.p99_ms is not None else " " * 33)  # wrk may print only one
    cpu = (f"server CPU {load.cpu_seconds * 1e6 / max(load.ok, 1):6,.0f} us/req  " if load.cpu_seconds is not None
           else " " * 30)
    return (f"  {name:<30} {clients:>3} clients  {load.rate:>9,.0f} req/s  {load.rate * events_per_request:>9,.0f} "
            f"events/s  {latency}  {cpu}errors {load.errors:<4} load {before} -> {_load_avg()}")


def _measured(server: Served, generate, *args) -> Load:
    """`generate(server.url, *args)` with the server's CPU time over the case added."""
    from dataclasses import replace

    before = server.cpu_seconds()
    load = generate(server.url, *args)
    after = server.cpu_seconds()
    return replace(load, cpu_seconds=None if before is None or after is None else after - before)


def _seed_round(dsn: str, singles: list[dict], pg_clients: list[int], seconds: float, record) -> None:
    """One round of the seed's Postgres design, both variants, each client count on a fresh table."""
    for variant, name in (("correct", "seed design, id after lock"), ("bigserial", "seed design, bigserial id")):
        for c in pg_clients:
            design = SeedDesign(dsn, variant)
            try:
                before = _load_avg()
                case = record(f"pg_{variant}_{c}", name, c, pg_load(design, singles, c, seconds), 1, before)
                rows, forks = design.rows_and_forks()
                refused = design.refuses_update_and_delete()
            finally:
                design.drop()
            case.update(rows=rows, forks=forks, update_delete_refused=refused)
            print(f"  {'':<30} {'':>11}  {rows:,} rows, {forks} forks, UPDATE/DELETE refused: {refused}")


def _median_case(cases: list[dict]) -> dict:
    """One case over its rounds: the median of each figure; errors, rows and forks summed; the
    UPDATE/DELETE refusal only if every round refused."""
    merged: dict = {"clients": cases[0]["clients"], "rounds": len(cases)}
    for key in ("requests_per_s", "events_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_request"):
        values = [case[key] for case in cases if case.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    for key in ("errors", "rows", "forks"):
        if key in cases[0]:
            merged[key] = sum(case[key] for case in cases)
    if "update_delete_refused" in cases[0]:
        merged["update_delete_refused"] = all(case["update_delete_refused"] for case in cases)
    return merged


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def run(args: argparse.Namespace, work: Path) -> dict:
    seconds = 0.5 if args.quick else args.seconds  # wrk rounds up to 1 s
    rounds = 1 if args.quick else args.rounds
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    load_fn = wrk_load if generator == "wrk" else python_load
    clients = [int(c) for c in args.clients.split(",")]
    pg_clients = [int(c) for c in args.pg_clients.split(",")]
    batch_clients = [int(c) for c in str(args.batch_clients).split(",")]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"runlog ingest bench, {now}: {os.cpu_count()} cores, load {_load_avg()}, {seconds:g} s per case, "
          f"generator {generator}{' (wrk -t1)' if generator == 'wrk' else ''}")
    print(f"  disk now: {fsync_probe(work):,.0f} SQLite commits/s (one row per transaction, synchronous=FULL)")

    singles = make_events(1000, 10, seed=1)
    batches = make_events(args.batch_runs, 10, seed=2)
    single_file = write_bodies(work / "single.jsonl", singles)
    batch_file = write_bodies(work / "batches.jsonl", [batches[i:i + BATCH] for i in range(0, len(batches), BATCH)])
    results: dict = {"date": now, "generator": generator, "seconds": seconds, "rounds": rounds, "cases": {}}
    samples: dict[str, tuple[str, int, list[dict]]] = {}  # key -> (name, events per request, one case per round)

    def record(key: str, name: str, c: int, load: Load, per_request: int, before: str) -> dict:
        print(_line(name, c, load, per_request, before), flush=True)
        case = {"clients": c, "requests_per_s": load.rate, "events_per_s": load.rate * per_request,
                "p50_ms": load.p50_ms, "p99_ms": load.p99_ms, "errors": load.errors,
                "server_cpu_us_per_request": None if load.cpu_seconds is None
                else load.cpu_seconds * 1e6 / max(load.ok, 1)}
        samples.setdefault(key, (name, per_request, []))[2].append(case)
        return case

    workers = args.workers or default_workers()
    from appliance.loops import resolved

    loop = resolved(args.loop)
    results["workers"], results["loop"] = workers, loop
    print(f"  runlog serve with RUNLOG_WORKERS={workers}{'' if args.workers else ' (its default here)'}, "
          f"RUNLOG_LOOP={loop}; the bare endpoint on the same loop with the same number of worker processes"
          + (", and with one" if workers > 1 else ""))
    dsn = args.dsn or os.environ.get("RUNLOG_TEST_POSTGRES_DSN") or DEFAULT_DSN
    unreachable = "skipped (--no-postgres)" if args.no_postgres else postgres_reachable(dsn)
    bare = [("bare", bare_server(work / "bare.log", workers, loop).spawn(), f"bare Litestar, {workers} process(es)")]
    if workers > 1:
        bare.append(("bare1", bare_server(work / "bare1.log", 1, loop).spawn(), "bare Litestar, 1 process"))
    stores: list[tuple[Path, int]] = []  # each round's runlog store and its size before the batched cases
    try:
        for _, server, _ in bare:
            server.wait_healthy()
        # Every case once per round, so that the machine's drift hits each comparison alike; the
        # servers idle while the seed's design runs on Postgres. Each round serves a new runlog
        # store: what a commit writes grows with the store, and the rounds must be alike.
        for round_number in range(1, rounds + 1):
            if rounds > 1:
                print(f"  round {round_number} of {rounds}", flush=True)
            data = work / f"data-{round_number}"
            runlog = runlog_server(data, work / f"runlog-{round_number}.log", workers, loop).spawn()
            try:
                runlog.wait_healthy()
                made = subprocess.run([sys.executable, "-m", "appliance.cli", "token", "create", "bench", "--scopes",
                                       "append"], env=runlog.env, cwd=runlog.cwd, capture_output=True, text=True,
                                      check=True)
                token = made.stdout.strip()
                servers = [*bare, ("runlog", runlog, f"runlog, 1 event/req, {workers} w.")]
                for c in clients:
                    for key, server, name in servers:
                        before = _load_avg()
                        record(f"{key}_{c}", name, c,
                               _measured(server, load_fn, "/v1/events", token, single_file, c, seconds), 1, before)
                stores.append((data / "runlog.sqlite", httpx.get(f"{runlog.url}/healthz").json()["tree_size"]))
                for c in batch_clients:
                    before = _load_avg()
                    record(f"runlog_batched_{c}", f"runlog, {BATCH} events/request", c,
                           _measured(runlog, load_fn, "/v1/events", token, batch_file, c, seconds), BATCH, before)
            finally:
                runlog.stop()
            if not unreachable:
                _seed_round(dsn, singles, pg_clients, seconds, record)
    finally:
        for _, server, _ in bare:
            server.stop()
    if unreachable:
        print(f"  seed's Postgres design: {unreachable}")
    results["cases"] = {key: _median_case(cases) for key, (_, _, cases) in samples.items()}
    if rounds > 1:
        print(f"  medians over {rounds} rounds:")
        for key, (name, per_request, _) in samples.items():
            case = results["cases"][key]
            print(f"  {name:<30} {case['clients']:>3} clients  {case['requests_per_s']:>9,.0f} req/s  "
                  f"{case['events_per_s']:>9,.0f} events/s" + (f"  {case['forks']} forks in all" if "forks" in case else ""))
    # The server's batched throughput: its best over the client counts (a 1,000-event request
    # waits ~5 ms in a worker's parse while the writer may idle; a few clients leave it idle).
    results["cases"]["runlog_batched"] = max((results["cases"][f"runlog_batched_{c}"] for c in batch_clients),
                                             key=lambda case: case["events_per_s"])
    checks = [check_store(path, batched_from, args.sample) for path, batched_from in stores]
    results["runlog_stores"] = [check.__dict__ for check in checks]
    results["runlog_store"] = {  # all rounds' stores together
        "entries": sum(c.entries for c in checks), "forks": sum(c.forks for c in checks),
        "verified": next((c.verified for c in checks if c.verified != "ok"), "ok"),
        "sampled": sum(c.sampled for c in checks), "not_rfc8785": sum(c.not_rfc8785 for c in checks)}
    for check in checks:
        print(f"  runlog store: {check.entries:,} entries, forks {check.forks}, core verification {check.verified} "
              f"({check.verify_per_second:,.0f} entries/s), {check.sampled:,} sampled batched entries, "
              f"{check.not_rfc8785} differ from rfc8785.dumps(json.loads(bytes))")
    summarize(results, clients, pg_clients)
    return results


def summarize(results: dict, clients: list[int], pg_clients: list[int]) -> None:
    cases, top = results["cases"], max(clients)
    print("targets (DESIGN.md):")
    runlog_top = cases[f"runlog_{top}"]["events_per_s"]
    seed_key = f"pg_correct_{max(pg_clients)}"
    if seed_key in cases:
        ratio = runlog_top / cases[seed_key]["events_per_s"]
        print(f"  runlog {top} clients / seed design {max(pg_clients)} clients: {ratio:5.2f}x   "
              f"(target >= 2x)      {_verdict(ratio >= 2)}")
    share = runlog_top / cases[f"bare_{top}"]["events_per_s"]
    print(f"  runlog {top} clients / bare endpoint {top} clients, same worker processes: {share:5.0%}   "
          f"(target >= 60%)     {_verdict(share >= 0.6)}")
    if f"bare1_{top}" in cases:
        print(f"    (against the bare endpoint in one process: {runlog_top / cases[f'bare1_{top}']['events_per_s']:.0%})")
    runlog_cpu, bare_cpu = cases[f"runlog_{top}"]["server_cpu_us_per_request"], cases[f"bare_{top}"]["server_cpu_us_per_request"]
    if runlog_cpu and bare_cpu:
        print(f"    server CPU per request at {top} clients: runlog {runlog_cpu:,.0f} us, bare {bare_cpu:,.0f} us "
              f"(bare/runlog {bare_cpu / runlog_cpu:.0%}: the share a CPU-bound runlog can reach)")
    batched = cases["runlog_batched"]["events_per_s"]
    print(f"  runlog batched: {batched:,.0f} events/s with {cases['runlog_batched']['clients']} clients, the best of "
          f"{len([key for key in cases if key.startswith('runlog_batched_')])} client count(s) "
          f"(target >= 50,000)  {_verdict(batched >= 50_000)}")
    store = results["runlog_store"]
    canonical = store["not_rfc8785"] == 0 and store["sampled"] > 0
    print(f"  batched bytes identical to rfc8785.dumps ({store['sampled']:,} sampled): {_verdict(canonical)}")
    forks = {key: case["forks"] for key, case in cases.items() if "forks" in case}
    runlog_ok = store["forks"] == 0 and store["verified"] == "ok"
    print(f"  chain forks: runlog {store['forks']} (core verification {store['verified']})  {_verdict(runlog_ok)};  "
          + ", ".join(f"{key} {value}" for key, value in forks.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each case (default 10)")
    parser.add_argument("--batch-runs", type=int, default=20_000,
                        help="runs of 10 steps in the batched bodies, interleaved (default 20,000: wrk posts the "
                             "bodies in a loop, so each run grows by 10 steps per pass; until session 8 2,000, "
                             "whose runs reached hundreds of steps and slowed every commit)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every case, interleaved; the figures are their medians (default 3)")
    parser.add_argument("--quick", action="store_true", help="0.5 s per case (1 s with wrk): a smoke test, not a figure")
    parser.add_argument("--clients", default="1,8,32", help="client counts for one event per request")
    parser.add_argument("--pg-clients", default="1,8", help="client counts for the seed's Postgres design")
    parser.add_argument("--batch-clients", default="4,8",
                        help="client counts sending 1,000-event batches (default 4,8; the target takes the best)")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--dsn", help="Postgres DSN (default RUNLOG_TEST_POSTGRES_DSN, else " + DEFAULT_DSN + ")")
    parser.add_argument("--no-postgres", action="store_true", help="skip the seed's Postgres design")
    parser.add_argument("--sample", type=int, default=2000, help="entries compared with rfc8785.dumps")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (store, logs)")
    parser.add_argument("--workers", type=int, help="RUNLOG_WORKERS for runlog serve (default: its own default)")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                        help="RUNLOG_LOOP for runlog serve and the bare endpoint (default auto: uvloop when installed)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--bare-workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_server:
        serve_bare(args.bare_server, args.bare_workers, args.loop)
        return 0
    work = Path(tempfile.mkdtemp(prefix="runlog-bench-ingest-"))
    try:
        results = run(args, work)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

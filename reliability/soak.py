"""Soak: 32 producers at full speed against a real `runlog serve` while checkpoints are cut (every
few seconds, and on demand by exports), anchored (a local directory, and Postgres when reachable)
and exports are read and verified offline. Reports events/s and p99 latency per window, the
server's RSS growth after warm-up, and at the end stops the server cleanly, runs `runlog verify
--db --anchors` and checks every acknowledged event is stored exactly once.

    python -m reliability.soak --minutes 10          # the long run (docs/RELIABILITY.md)
    python -m reliability.soak --seconds 60          # what CI runs (tests/reliability/test_soak.py)
"""

import argparse
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from appliance.core.bundle_verify import verify_bundle
from appliance.core.errors import RunlogError
from appliance.verify import load_key
from reliability.checks import anchor_names, anchor_problems, ledger_problems, verify_store, wait_until_anchored
from reliability.load import RUN_STEPS, ClientLedger, Load, percentile
from reliability.postgres import PostgresTable, postgres_available
from tests.e2e.server import ADMIN_TOKEN, Server


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class SoakReport:
    seconds: float
    clients: int
    warmup: float
    windows: list[tuple[float, float, float | None, int]] = field(default_factory=list)  # start, ev/s, p99 ms, failed
    acknowledged: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, KiB)
    exports_verified: int = 0
    checkpoints: int = 0
    entries: int = 0
    anchors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # the machine's 1-minute load, start and end

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds if self.seconds else 0.0

    def rss_growth(self) -> tuple[int, int, float] | None:
        """(RSS at the end of warm-up, RSS at the end, growth in %): medians of the samples in the
        10 s after warm-up and in the last 10 s, so one garbage-collection spike does not count."""
        after = [kib for t, kib in self.rss if self.warmup <= t < self.warmup + 10]
        last = [kib for t, kib in self.rss if t >= self.seconds - 10]
        if not after or not last:
            return None
        start, end = sorted(after)[len(after) // 2], sorted(last)[len(last) // 2]
        return start, end, 100.0 * (end - start) / start

    def lines(self) -> list[str]:
        out = [f"soak: {self.clients} clients for {self.seconds:.0f} s, anchors: {', '.join(self.anchors)}; "
               f"machine load average {' -> '.join(f'{v:.1f}' for v in self.load_average)} on {os.cpu_count()} CPUs",
               "  window   events/s   p99 ms   failed"]
        out += [f"  {start:5.0f}s  {rate:9.0f}  {p99 or 0:7.1f}  {failed:7d}" for start, rate, p99, failed in self.windows]
        out.append(f"  in all: {self.acknowledged} acknowledged ({self.rate:.0f}/s), {self.failed} failed {self.errors or ''}"
                   f", p50 {self.p50_ms or 0:.1f} ms, p99 {self.p99_ms or 0:.1f} ms")
        growth = self.rss_growth()
        if growth:
            out.append(f"  RSS after {self.warmup:.0f} s warm-up {growth[0] / 1024:.1f} MiB, at the end "
                       f"{growth[1] / 1024:.1f} MiB: {growth[2]:+.1f}% (target under 10%)")
        out.append(f"  {self.exports_verified} exports verified offline; {self.checkpoints} checkpoints, each anchored "
                   f"once; store of {self.entries} entries verified")
        out += [f"  PROBLEM: {p}" for p in self.problems] or ["  every check held"]
        return out


class SideTraffic(threading.Thread):
    """Exports of closed runs, verified offline, and an on-demand checkpoint now and then."""

    def __init__(self, server: Server, load: Load, report: SoakReport, seed: int) -> None:
        super().__init__(name="soak-side-traffic", daemon=True)
        self.server, self.load, self.report = server, load, report
        self.key = load_key(str(server.data_dir / "keys" / "log.pub"))
        self.rng = random.Random(seed)
        self.stop = threading.Event()

    def run(self) -> None:
        http = httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        rounds = 0
        while not self.stop.wait(0.5):
            rounds += 1
            try:
                if rounds % 10 == 0:
                    response = http.post("/v1/checkpoints")
                    if response.status_code not in (200, 201):
                        self.report.problems.append(f"POST /v1/checkpoints: {response.status_code} {response.text[:200]}")
                if self.load.closed_runs:
                    self._export(http, self.rng.choice(self.load.closed_runs))
            except httpx.HTTPError as error:
                self.report.problems.append(f"side traffic: {type(error).__name__}: {error}")
        http.close()

    def _export(self, http: httpx.Client, trace_id: str) -> None:
        response = http.get(f"/v1/runs/{trace_id}/export", params={"format": "json"})
        if response.status_code != 200:
            self.report.problems.append(f"export of {trace_id}: {response.status_code} {response.text[:200]}")
            return
        try:
            verdict = verify_bundle(response.content, key=self.key)
        except RunlogError as error:
            self.report.problems.append(f"export of {trace_id} does not verify: {error}")
            return
        if not verdict.closed or verdict.count != RUN_STEPS:
            self.report.problems.append(f"export of {trace_id}: {verdict.count} entries, closed {verdict.closed}; "
                                        f"expected a closed run of {RUN_STEPS}")
        self.report.exports_verified += 1


def run_soak(work: Path, *, seconds: float, clients: int = 32, window: float = 10.0, warmup: float | None = None,
             checkpoint_interval: float = 2.0, postgres: bool | None = None, seed: int = 20261128,
             progress=None) -> SoakReport:
    """Run the soak in `work` (a fresh directory) and return its report; `postgres=None` anchors to
    Postgres too when it is reachable."""
    warmup = warmup if warmup is not None else min(60.0, seconds / 4)
    report = SoakReport(seconds, clients, warmup)
    use_postgres = postgres_available() if postgres is None else postgres
    with PostgresTable() if use_postgres else contextlib.nullcontext() as pg:
        env = {"RUNLOG_CHECKPOINT_INTERVAL": str(checkpoint_interval), "RUNLOG_ANCHOR_DIR": str(work / "anchor"),
               **(pg.env if pg is not None else {})}
        server = Server(work / "data", **env).start()
        try:
            ledgers = _drive(server, report, seconds=seconds, clients=clients, window=window, seed=seed,
                             progress=progress)
            names = anchor_names(server)
            report.anchors = names
            report.problems += wait_until_anchored(server.data_dir / "runlog.sqlite", names, timeout=60)
            if server.terminate() != 0:
                report.problems.append(f"runlog serve did not stop cleanly: {server.output()}")
        finally:
            server.kill()
        _final_checks(server, report, ledgers, pg)
    return report


def _drive(server: Server, report: SoakReport, *, seconds: float, clients: int, window: float, seed: int,
           progress) -> list[ClientLedger]:
    load = Load(server.url, ADMIN_TOKEN, clients, window_seconds=window)
    side = SideTraffic(server, load, report, seed)
    started = time.monotonic()
    report.load_average.append(os.getloadavg()[0])
    load.start()
    side.start()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            kib = rss_kib(server.process.pid)
            if kib is not None:
                report.rss.append((elapsed, kib))
            if progress is not None and len(report.rss) % int(max(1, window)) == 0:
                progress(f"{elapsed:5.0f} s: {load.acknowledged} acknowledged, RSS {(kib or 0) / 1024:.1f} MiB")
            time.sleep(1.0)
    finally:
        side.stop.set()
        load.stop()
        side.join(60)
    report.seconds = time.monotonic() - started
    report.load_average.append(os.getloadavg()[0])
    report.acknowledged, report.failed, report.errors = load.acknowledged, load.failed, dict(load.errors)
    report.windows = [(w.start, w.acked / window, percentile(w.latencies, 0.99), w.failed) for w in load.windows
                      if w.start + window <= report.seconds + 1e-6]
    latencies = [ms for w in load.windows for ms in w.latencies]
    report.p50_ms, report.p99_ms = percentile(latencies, 0.5), percentile(latencies, 0.99)
    if load.failed:
        report.problems.append(f"{load.failed} requests failed: {load.errors}")
    return load.ledgers


def _final_checks(server: Server, report: SoakReport, ledgers: list[ClientLedger], pg: PostgresTable | None) -> None:
    verified, problems = verify_store(server, anchors=True)
    report.problems += problems
    entries, problems = ledger_problems(server.data_dir / "runlog.sqlite", ledgers)
    report.entries = entries
    report.problems += problems
    if verified and verified.get("entries") != entries:
        report.problems.append(f"runlog verify saw {verified.get('entries')} entries, the store holds {entries}")
    origin = verified.get("origin") or "localhost/runlog"
    report.checkpoints, problems = anchor_problems(server.data_dir / "runlog.sqlite", origin,
                                                   server.data_dir.parent / "anchor", pg)
    report.problems += problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.soak", description=__doc__.split("\n\n")[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float)
    length.add_argument("--seconds", type=float)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--no-postgres", action="store_true", help="anchor to the local directory only")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    with tempfile.TemporaryDirectory(prefix="runlog-soak-") as work:
        report = run_soak(Path(work), seconds=seconds, clients=args.clients, postgres=False if args.no_postgres else None,
                          progress=lambda line: print(line, file=sys.stderr, flush=True))
    print("\n".join(report.lines()))
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())

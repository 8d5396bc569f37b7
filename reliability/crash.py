"""Crash: kill -9 a real `runlog serve` at random points while producers stream appends (retrying
unacknowledged ones with the same Idempotency-Key), checkpoints are cut every 0.2 s and on demand,
the outbox publishes them to a local-directory anchor (and Postgres when reachable), and backups
run; restart it each time on the same port. After every kill the store holds every acknowledged
event exactly once; at the end `runlog verify --db --anchors` holds and every checkpoint ever cut
is in every anchor exactly once (the outbox resumed after each kill).

    python -m reliability.crash --kills 60       # the long run (docs/RELIABILITY.md)

tests/e2e/test_crash.py runs 20 kill points of the same code in CI.

Kill points cycle through phases; what was in flight is read from the dead server's store:
- ingest: after 0.3-1.0 s of streaming (CI: 0.05-0.5 s);
- anchor: 0.2-1.2 s into a restart, while the outbox drains that backlog; a kill that lands
  between an anchor's write and the outbox's "published" mark shows as a checkpoint the anchor
  holds but the outbox still has pending, and must be republished idempotently;
- checkpoint: 0-20 ms after `POST /v1/checkpoints` was sent;
- backup: `runlog backup DEST` started, then 0-0.3 s later the server killed (the backup must
  still complete and verify), or, in every other backup round, the backup itself killed within
  the time the previous backup took (a partial copy stays under its temporary name; a file under
  DEST's name, left by a kill that landed after the backup named its verified copy, must verify).
"""

import argparse
import contextlib
import itertools
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from appliance.store.db import connect, get_meta
from reliability.checks import anchor_names, anchor_problems, ledger_problems, verify_store, wait_until_anchored
from reliability.load import ClientLedger, Load
from reliability.postgres import PostgresTable, postgres_available
from tests.e2e.server import ADMIN_TOKEN, Server

PHASES = ("ingest", "anchor", "checkpoint", "backup")


@dataclass
class CrashReport:
    kills: int = 0
    phases: Counter = field(default_factory=Counter)
    observed: Counter = field(default_factory=Counter)  # what the kills interrupted
    acknowledged: int = 0
    entries: int = 0
    checkpoints: int = 0
    backups_verified: int = 0
    anchors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"crash: {self.kills} kill -9 points ({', '.join(f'{p} {n}' for p, n in self.phases.items())}), "
               f"anchors: {', '.join(self.anchors)}",
               f"  interrupted: {', '.join(f'{what} {n}' for what, n in sorted(self.observed.items())) or 'nothing seen'}",
               f"  {self.acknowledged} acknowledged events, {self.entries} entries stored, {self.checkpoints} checkpoints "
               f"anchored, {self.backups_verified} backups verified"]
        out += [f"  PROBLEM: {p}" for p in self.problems] or ["  every check held"]
        return out


def backup_available(server: Server) -> bool:
    return server.runlog("backup", "--help").returncode == 0


VERIFIED_BACKUPS = ("backup completed though the server was killed", "backup finished before its kill",
                    "backup killed after giving its verified copy its name")


def backup_outcome(dest: Path, returncode: int, *, killed: bool, stderr: str,
                   verify: Callable[[Path], subprocess.CompletedProcess]) -> tuple[str, str | None]:
    """(what happened, the problem or None) for a `runlog backup DEST` that ran while the server
    (`killed=False`) or the backup itself (`killed=True`) was killed. A file at DEST must always be
    a whole backup that verifies, whatever the exit status: `runlog backup` gives its copy that
    name only once it verified (os.link or rename, atomic), so a kill that lands between that and
    the process's exit leaves a complete backup, never a partial one under a final-looking name."""
    if dest.exists():
        verified = verify(dest)
        if returncode == 0 or killed:
            what = (("backup killed after giving its verified copy its name" if returncode != 0
                     else "backup finished before its kill") if killed
                    else "backup completed though the server was killed")
            if verified.returncode == 0:
                return what, None
            return what, (f"backup {dest.name} (exit status {returncode}) is under its name but does not verify: "
                          f"{verified.stdout[-500:]}")
        return "backup failed", f"backup {dest.name} exited {returncode} but left a file under its name: {stderr}"
    if returncode == 0:
        return "backup finished", f"backup {dest.name} exited 0 but wrote nothing at its name: {stderr}"
    if killed:
        began = any(dest.parent.glob(f".{dest.name}.*"))  # its temporary copy, left behind
        return ("backup killed while writing its copy" if began else "backup killed before copying"), None
    return "backup failed", f"backup {dest.name} failed when the server was killed during it: {stderr}"


class Crasher:
    """One crash run: the server, its producers, the anchors and the kill loop."""

    def __init__(self, work: Path, *, seed: int, pg: PostgresTable | None, clients: int, check_each: bool,
                 streaming: tuple[float, float]) -> None:
        self.work, self.rng, self.pg, self.check_each = work, random.Random(seed), pg, check_each
        self.streaming = streaming  # seconds of ingest before an ingest-phase kill
        self.env = {"RUNLOG_CHECKPOINT_INTERVAL": "0.2", "RUNLOG_ANCHOR_DIR": str(work / "anchor"),
                    **(pg.env if pg else {})}
        self.server = Server(work / "data", **self.env)
        self.clients = clients
        self.report = CrashReport()
        self.backups = 0
        self.backup_seconds = 1.0  # how long the last backup took from start to exit

    @property
    def db(self) -> Path:
        return self.server.data_dir / "runlog.sqlite"

    def restart(self) -> None:
        self.server.kill()
        self.server = Server(self.server.data_dir, port=self.server.port, **self.env).start()  # same port: producers reconnect

    def run(self, kills: int, phases: tuple[str, ...] | None = None, progress=None) -> CrashReport:
        self.server.start()
        phases = phases or tuple(p for p in PHASES if p != "backup" or backup_available(self.server))
        load = Load(self.server.url, ADMIN_TOKEN, self.clients, retry=True, timeout=5).start()
        self._ledgers = load.ledgers
        try:
            for round_ in itertools.count():
                if self.report.kills >= kills:
                    break
                phase = phases[round_ % len(phases)]
                getattr(self, f"_kill_during_{phase}")()
                self._killed(phase)
                self.restart()
                if progress is not None:
                    progress(f"kill {self.report.kills}/{kills} ({phase}): {load.acknowledged} acknowledged")
            time.sleep(0.5)
        finally:
            load.stop()
        self.report.acknowledged = sum(ledger.acknowledged() for ledger in load.ledgers)
        try:
            self._final_checks(load.ledgers)
        finally:
            self.server.kill()
        return self.report

    # -- kill points -------------------------------------------------------------------------

    def _kill_during_ingest(self) -> None:
        time.sleep(self.rng.uniform(*self.streaming))
        self.server.kill()

    def _kill_during_anchor(self) -> None:
        """Build a backlog (checkpoints every 0.2 s; the outbox polls every 5 s), kill, and kill the
        next server during its start-up, when its outbox drains that backlog."""
        time.sleep(0.2 + self.rng.uniform(*self.streaming))
        self.server.kill()
        self._killed("ingest")
        self.server = Server(self.server.data_dir, port=self.server.port, **self.env).spawn()
        time.sleep(self.rng.uniform(0.2, 1.2))
        self.server.kill()

    def _kill_during_checkpoint(self) -> None:
        time.sleep(self.rng.uniform(0.05, 0.3))
        answered = threading.Event()

        def cut() -> None:
            try:
                httpx.post(f"{self.server.url}/v1/checkpoints", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                           timeout=5)
                answered.set()
            except httpx.HTTPError:
                pass

        thread = threading.Thread(target=cut, daemon=True)
        thread.start()
        time.sleep(self.rng.uniform(0.0, 0.02))
        self.server.kill()
        thread.join(10)
        if not answered.is_set():
            self.report.observed["on-demand checkpoint unanswered"] += 1

    def _kill_during_backup(self) -> None:
        self.backups += 1
        dest = self.work / "backups" / f"backup-{self.backups}.sqlite"
        dest.parent.mkdir(exist_ok=True)
        backup = subprocess.Popen([sys.executable, "-m", "appliance.cli", "backup", str(dest)], env=self.server.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()
        kill_backup = self.backups % 2 == 0
        # The backup's own kill lands within the time the previous whole backup took.
        time.sleep(self.rng.uniform(0.2, 0.95) * self.backup_seconds if kill_backup else self.rng.uniform(0.0, 0.3))
        if kill_backup:
            backup.kill()
        self.server.kill()
        err = backup.communicate(timeout=120)[1].decode(errors="replace")[-500:]
        if not kill_backup:
            self.backup_seconds = time.monotonic() - started
        outcome, problem = backup_outcome(dest, backup.returncode, killed=kill_backup, stderr=err,
                                          verify=lambda path: self.server.runlog("verify", "--db", str(path)))
        if problem is not None:
            self.report.problems.append(problem)
        else:
            self.report.observed[outcome] += 1
            self.report.backups_verified += outcome in VERIFIED_BACKUPS

    # -- checks --------------------------------------------------------------------------------

    def _killed(self, phase: str) -> None:
        self.report.kills += 1
        self.report.phases[phase] += 1
        self._observe(self._ledgers)

    def _observe(self, ledgers: list[ClientLedger]) -> None:
        """What the kill interrupted, and (with check_each) that nothing acknowledged was lost."""
        conn = connect(self.db, readonly=True)
        try:
            pending = conn.execute("SELECT anchor, size FROM anchor_outbox WHERE published_at IS NULL").fetchall()
            origin = get_meta(conn, "origin")
        finally:
            conn.close()
        if pending:
            self.report.observed["anchoring pending"] += 1
        folder = self.work / "anchor" / quote(origin, safe="") / "checkpoints"
        held = {int(p.name) for p in folder.iterdir() if not p.name.startswith(".")} if folder.exists() else set()
        if self.pg is not None:
            held |= {size for size, _ in self.pg.rows(origin)}
        if any(size in held for _, size in pending):
            self.report.observed["anchor written, outbox not yet marked"] += 1
        if self.check_each:
            _, problems = ledger_problems(self.db, ledgers)
            self.report.problems += [f"after kill {self.report.kills}: {p}" for p in problems]

    def _final_checks(self, ledgers: list[ClientLedger]) -> None:
        names = anchor_names(self.server)
        self.report.anchors = names
        self.report.problems += wait_until_anchored(self.db, names, timeout=60)
        self.server.kill()  # the last kill: the store must verify as a crash leaves it
        verified, problems = verify_store(self.server, anchors=True)
        self.report.problems += problems
        self.report.entries, problems = ledger_problems(self.db, ledgers)
        self.report.problems += problems
        self.report.checkpoints, problems = anchor_problems(self.db, verified.get("origin") or "localhost/runlog",
                                                            self.work / "anchor", self.pg)
        self.report.problems += problems


def run_crash(work: Path, *, kills: int, clients: int = 4, seed: int = 20261128, postgres: bool | None = None,
              check_each: bool = True, phases: tuple[str, ...] | None = None,
              streaming: tuple[float, float] = (0.3, 1.0), progress=None) -> CrashReport:
    """Run `kills` kill points in `work` (a fresh directory); `postgres=None` uses it when reachable;
    `streaming` is the range of seconds producers stream before an ingest-phase kill."""
    use_postgres = postgres_available() if postgres is None else postgres
    with PostgresTable() if use_postgres else contextlib.nullcontext() as pg:
        crasher = Crasher(work, seed=seed, pg=pg, clients=clients, check_each=check_each, streaming=streaming)
        return crasher.run(kills, phases, progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--no-postgres", action="store_true", help="anchor to the local directory only")
    parser.add_argument("--phases", help=f"comma-separated, from {','.join(PHASES)} (default: all that exist here)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runlog-crash-") as work:
        report = run_crash(Path(work), kills=args.kills, clients=args.clients, seed=args.seed,
                           postgres=False if args.no_postgres else None,
                           phases=tuple(args.phases.split(",")) if args.phases else None,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    print("\n".join(report.lines()))
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())

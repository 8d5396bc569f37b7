"""Anchor outages while the appliance ingests: the S3 endpoint (moto's server) cut off in the
middle of publishing, and Postgres restarted (`pg_ctlcluster ... restart`) and, in the long run,
unreachable for minutes. Ingest must never wait; `/healthz` must degrade past the lag threshold
and recover; afterwards every checkpoint is in each anchor exactly once (one S3 object version
per key, one Postgres row per size) and `runlog verify --db --anchors` holds.

    python -m reliability.outage --minutes 3     # the long run: production outbox backoff

The appliance runs in this process (the real app through Litestar's TestClient, the real
checkpointer and outbox) so that tests/anchors/test_outage.py can give the outbox a test-sized
backoff; the long run keeps the production one (full jitter, capped at 300 s). Both anchors are
reached through a TCP relay that is cut (every connection closed mid-flight, the port refusing)
and restored: that is "the endpoint is down" without touching the machine's Postgres, which other
test runs share; its real restart lasts seconds. Real restarts need root; skipped without it.

Ingest and the checkpointer never stop during the outages, so the outbox is never empty for long:
each wait for the anchors is for every checkpoint signed when the wait began (what was queued
during the outage), not for a moment with nothing pending. At the end ingest stops, a last
checkpoint is signed, and the run waits until both anchors hold it before the final checks.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from litestar.testing import TestClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from appliance.anchors.outbox import FORK, INVALID, Backoff, Outbox
from appliance.service import init_appliance, open_appliance
from appliance.settings import Settings
from appliance.store.db import connect
from appliance.web.app import create_app
from reliability.checks import anchor_problems, verify_store
from reliability.moto import MotoProcess
from reliability.postgres import PostgresTable
from reliability.relay import Relay

ADMIN = "reliability-outage-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def restart_postgres() -> subprocess.CompletedProcess:
    """Restart the machine's Postgres cluster (the `main` cluster of its one installed version)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                          capture_output=True, text=True, timeout=120)


@dataclass
class OutageReport:
    events: int = 0
    ingest_failures: int = 0
    slowest_ingest_ms: float = 0.0
    checkpoints: int = 0
    s3_server_mb: float | None = None
    queued: dict[str, int] = field(default_factory=dict)  # checkpoints waiting for an anchor when it came back
    timeline: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"outage: {self.events} events ingested throughout ({self.ingest_failures} failed, slowest request "
               f"{self.slowest_ingest_ms:.0f} ms), {self.checkpoints} checkpoints, each anchored once; "
               f"moto's server at {self.s3_server_mb or 0:.0f} MiB"]
        out += [f"  {line}" for line in self.timeline]
        out += [f"  PROBLEM: {p}" for p in self.problems] or ["  every check held"]
        return out


class Ingest(threading.Thread):
    """Batches of 20 events through the real app, as fast as it answers, until stopped."""

    def __init__(self, client: TestClient, report: OutageReport) -> None:
        super().__init__(name="outage-ingest", daemon=True)
        self.client, self.report, self.stop = client, report, threading.Event()

    def run(self) -> None:
        trace = uuid.uuid4().hex
        while not self.stop.is_set():
            events = [{"trace_id": trace, "step": f"step-{i}", "status": "info"} for i in range(20)]
            started = time.perf_counter()
            response = self.client.post("/v1/events", json=events, headers=AUTH)
            self.report.slowest_ingest_ms = max(self.report.slowest_ingest_ms, (time.perf_counter() - started) * 1e3)
            if response.status_code in (200, 201):
                self.report.events += 20
            else:
                self.report.ingest_failures += 1
            time.sleep(0.01)


class Outage:
    """The appliance with an S3 and a Postgres anchor, each behind a relay; see the module doc."""

    def __init__(self, work: Path, pg: PostgresTable, *, lag_threshold: float, backoff: Backoff | None,
                 poll_seconds: float, checkpoint_interval: float, seed: int) -> None:
        self.work, self.pg, self.rng, self.report = work, pg, random.Random(seed), OutageReport()
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.moto = MotoProcess()
        self.moto_port = self.moto.port
        self.bucket = f"outage-{uuid.uuid4().hex[:12]}"
        self.s3 = boto3.client("s3", endpoint_url=self.moto.url, region_name="us-east-1")
        try:
            self.s3.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
        except BaseException:
            self.moto.stop()
            raise
        self.s3_relay = Relay(("127.0.0.1", self.moto_port)).start()
        info = conninfo_to_dict(pg.app_dsn)
        self.pg_relay = Relay((info.get("host") or "127.0.0.1", int(info.get("port") or 5432))).start()
        self.env = {"RUNLOG_DATA_DIR": str(work / "data"), "RUNLOG_ADMIN_TOKEN": ADMIN,
                    "RUNLOG_CHECKPOINT_INTERVAL": str(checkpoint_interval),
                    "RUNLOG_ANCHOR_LAG_THRESHOLD": str(lag_threshold),
                    "RUNLOG_ANCHOR_S3_BUCKET": self.bucket, "RUNLOG_ANCHOR_S3_REGION": "us-east-1",
                    "RUNLOG_ANCHOR_S3_ENDPOINT": f"http://127.0.0.1:{self.s3_relay.port}",
                    "RUNLOG_ANCHOR_POSTGRES_DSN": make_conninfo(pg.app_dsn, host="127.0.0.1", port=self.pg_relay.port),
                    "RUNLOG_ANCHOR_POSTGRES_TABLE": pg.table}
        self.settings = Settings.from_env(self.env)
        self.backoff, self.poll = backoff, poll_seconds
        # A retry is at most the backoff's cap away: three of them bound a drain (900 s in production).
        self.drain_timeout = max(60.0, 3 * (backoff or Backoff()).cap)
        self.started = time.monotonic()

    def say(self, line: str) -> None:
        self.report.timeline.append(f"{time.monotonic() - self.started:6.1f} s  {line}")

    def run(self, *, s3_down: float, pg_down: float, pg_restart: bool) -> OutageReport:
        init_appliance(self.settings)
        appliance = open_appliance(self.settings)
        if self.backoff is not None:  # the same outbox, test-sized
            appliance.outbox.stop()
            appliance.outbox = Outbox(self.settings.db_path, appliance.anchors, origin=self.settings.origin,
                                      poll_seconds=self.poll, backoff=self.backoff)
            appliance.outbox.start()
        self.names = [anchor.name for anchor in appliance.anchors]
        try:
            with TestClient(create_app(self.settings, appliance=appliance)) as client:
                self.client = client
                ingest = Ingest(client, self.report)
                ingest.start()
                try:
                    self._wait_published(60, "both anchors publishing")
                    self._outage("S3", self.s3_relay, s3_down)
                    if pg_restart:
                        self._restart_postgres()
                    if pg_down > 0:
                        self._outage("Postgres", self.pg_relay, pg_down)
                finally:
                    ingest.stop.set()
                    ingest.join(30)
                self._settle()
        finally:
            appliance.close()
        self._final_checks()
        return self.report

    def _health(self) -> tuple[int, dict]:
        response = self.client.get("/healthz")
        return response.status_code, response.json()["checks"]

    def _latest_size(self) -> int | None:
        conn = connect(self.settings.db_path, readonly=True)
        try:
            return conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0]
        finally:
            conn.close()

    def _queued(self, name: str) -> int:
        """How many checkpoints the anchor `name` ("S3", "Postgres") has not published yet."""
        waiting, _ = self._unpublished()
        return next(n for anchor, n in waiting.items() if anchor.startswith(f"{name.lower()}:"))

    def _unpublished(self, through: int | None = None) -> tuple[dict[str, int], list[str]]:
        """For each anchor, how many checkpoints (of sizes up to `through`, if given) it has not
        published, queued or not yet; and the rows that failed for good (a fork, an invalid note)."""
        conn = connect(self.settings.db_path, readonly=True)
        try:
            waiting = {name: conn.execute(
                "SELECT count(*) FROM checkpoints c WHERE c.size <= ? AND NOT EXISTS (SELECT 1 FROM anchor_outbox o "
                "WHERE o.anchor = ? AND o.size = c.size AND o.published_at IS NOT NULL)",
                (2**63 - 1 if through is None else through, name)).fetchone()[0] for name in self.names}
            failed = conn.execute("SELECT anchor, size, last_error FROM anchor_outbox WHERE published_at IS NULL "
                                  "AND (last_error LIKE ? OR last_error LIKE ?) ORDER BY size LIMIT 5",
                                  (f"{FORK}%", f"{INVALID}%")).fetchall()
        finally:
            conn.close()
        return waiting, [f"{anchor} size {size}: {error[:200]}" for anchor, size, error in failed]

    def _wait_published(self, timeout: float, what: str) -> float | None:
        """Wait until both anchors published every checkpoint signed so far (the first one, if none
        is yet); return how long that took. Checkpoints signed meanwhile are not waited for, so the
        goal does not move while ingest goes on. A permanent failure ends the wait at once."""
        started = time.monotonic()
        through = None
        while True:
            through = through if through is not None else self._latest_size()
            waiting, failed = self._unpublished(through) if through is not None else ({}, [])
            if failed:
                self.report.problems += [f"{what}: failed for good: {f}" for f in failed]
                return None
            if through is not None and not any(waiting.values()):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                self.report.problems.append(
                    f"{what}: not published after {timeout:.0f} s: " + (", ".join(
                        f"{n} checkpoints up to size {through} to {name}" for name, n in waiting.items() if n)
                        or "no checkpoint was signed"))
                return None
            time.sleep(0.05)

    def _settle(self) -> None:
        """Ingest has stopped: sign the last checkpoint now and wait until both anchors hold it."""
        response = self.client.post("/v1/checkpoints", headers=AUTH)
        if response.status_code not in (200, 201):
            self.report.problems.append(f"POST /v1/checkpoints answered {response.status_code}: {response.text[:200]}")
        drained = self._wait_published(self.drain_timeout, "at the end")
        if drained is not None:
            self.say(f"ingest stopped; every checkpoint anchored {drained:.1f} s later")

    def _outage(self, name: str, relay: Relay, seconds: float) -> None:
        """Cut `relay` in the middle of one of the next few publishing requests, keep it cut for
        `seconds` while watching /healthz, restore it and wait for the outbox to drain."""
        in_flight = relay.stop_mid_request(skip=self.rng.randrange(6))
        self.say(f"{name} cut off {'mid-request' if in_flight else '(no request in flight)'}; "
                 f"{relay.cut_connections} live connections reset")
        if not in_flight:
            self.report.problems.append(f"no {name} request was in flight to cut")
        degraded_at = None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, checks = self._health()
            if degraded_at is None and status == 503:
                degraded_at = time.monotonic()
                line = next((v for k, v in checks.items() if k.startswith("anchor") and v.startswith("degraded")), "")
                self.say(f"/healthz 503: {line[:110]}")
            time.sleep(0.1)
        if degraded_at is None:
            self.report.problems.append(f"/healthz never degraded during the {seconds:.0f} s {name} outage")
        self.report.queued[name] = self._queued(name)
        relay.start()
        self.say(f"{name} back, {self.report.queued[name]} checkpoints queued for it")
        self._recovered(name)

    def _restart_postgres(self) -> None:
        time.sleep(self.rng.uniform(0.0, 0.3))
        self.say("pg_ctlcluster restart")
        done = restart_postgres()
        if done.returncode != 0:
            self.report.problems.append(f"pg_ctlcluster restart failed: {done.stderr.strip()}")
        self.say("Postgres restarted")
        self._recovered("Postgres")

    def _recovered(self, name: str) -> None:
        drained = self._wait_published(self.drain_timeout, f"after the {name} outage")
        if drained is not None:
            self.say(f"what was queued by then anchored {drained:.1f} s later")
        deadline = time.monotonic() + 30
        while (status := self._health()[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        if status != 200:
            self.report.problems.append(f"/healthz still {status} after the {name} outage: {self._health()[1]}")
        else:
            self.say("/healthz 200 again")

    def _final_checks(self) -> None:
        self.s3_relay.stop()
        self.pg_relay.stop()
        db = self.settings.db_path
        self.report.checkpoints, problems = anchor_problems(db, self.settings.origin, None, self.pg)
        self.report.problems += problems
        pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket)
        keys = sorted(v["Key"] for page in pages for v in page.get("Versions", []))
        if len(keys) != len(set(keys)):
            self.report.problems.append(f"S3 holds {len(keys) - len(set(keys))} extra versions of checkpoint objects")
        if len(set(keys)) != self.report.checkpoints:
            self.report.problems.append(f"S3 holds {len(set(keys))} checkpoints, the store signed {self.report.checkpoints}")
        if self.report.ingest_failures:
            self.report.problems.append(f"{self.report.ingest_failures} ingest requests failed during the outages")
        verifier = _EnvServer(self.work, {**self.env, "RUNLOG_ANCHOR_S3_ENDPOINT": f"http://127.0.0.1:{self.moto_port}",
                                          "RUNLOG_ANCHOR_POSTGRES_DSN": self.pg.app_dsn})
        _, problems = verify_store(verifier, anchors=True)
        self.report.problems += problems
        self.report.s3_server_mb = self.moto.rss_mb()

    def close(self) -> None:
        self.s3_relay.stop()
        self.pg_relay.stop()
        self.moto.stop()


class _EnvServer:
    """What `verify_store` needs of a server: its data directory and `runlog` with its environment."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.data_dir, self.env = work / "data", {**os.environ, **env}

    def runlog(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=300)


def run_outage(work: Path, *, s3_down: float, pg_down: float = 0.0, pg_restart: bool = True,
               lag_threshold: float = 1.0, backoff: Backoff | None = None, poll_seconds: float = 5.0,
               checkpoint_interval: float = 1.0, seed: int = 20261128) -> OutageReport:
    """The outages in order: S3 cut for `s3_down` s, a real Postgres restart, Postgres cut for
    `pg_down` s. `backoff=None` keeps the production outbox. Long runs want a checkpoint interval
    of seconds: the S3 anchor lists a key's versions twice per publish and moto keeps a copy of every
    version in the bucket per listing (reliability/moto.py), so its memory grows with the square
    of the number of checkpoints."""
    with PostgresTable() as pg:
        outage = Outage(work, pg, lag_threshold=lag_threshold, backoff=backoff, poll_seconds=poll_seconds,
                        checkpoint_interval=checkpoint_interval, seed=seed)
        try:
            return outage.run(s3_down=s3_down, pg_down=pg_down, pg_restart=pg_restart)
        finally:
            outage.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.outage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long S3, then Postgres, stay cut off")
    parser.add_argument("--no-restart", action="store_true", help="skip the real Postgres restart")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runlog-outage-") as work:
        report = run_outage(Path(work), s3_down=60 * args.minutes, pg_down=60 * args.minutes,
                            pg_restart=not args.no_restart, lag_threshold=30.0, checkpoint_interval=2.0)
    print("\n".join(report.lines()))
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())

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
"""

import argparse
import logging
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
from moto.server import ThreadedMotoServer
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from appliance.anchors.outbox import Backoff, Outbox
from appliance.service import init_appliance, open_appliance
from appliance.settings import Settings
from appliance.web.app import create_app
from reliability.checks import anchor_problems, verify_store, wait_until_anchored
from reliability.postgres import PostgresTable
from reliability.relay import Relay
from tests.e2e.server import free_port

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
    timeline: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"outage: {self.events} events ingested throughout ({self.ingest_failures} failed, slowest request "
               f"{self.slowest_ingest_ms:.0f} ms), {self.checkpoints} checkpoints, each anchored once"]
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
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        self.moto_port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.moto.start()
        self.bucket = f"outage-{uuid.uuid4().hex[:12]}"
        self.s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.moto_port}", region_name="us-east-1")
        self.s3.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
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
                    self._wait_drained(60, "both anchors publishing")
                    self._outage("S3", self.s3_relay, s3_down)
                    if pg_restart:
                        self._restart_postgres()
                    if pg_down > 0:
                        self._outage("Postgres", self.pg_relay, pg_down)
                finally:
                    ingest.stop.set()
                    ingest.join(30)
        finally:
            appliance.close()
        self._final_checks()
        return self.report

    def _health(self) -> tuple[int, dict]:
        response = self.client.get("/healthz")
        return response.status_code, response.json()["checks"]

    def _wait_drained(self, timeout: float, what: str) -> float | None:
        started = time.monotonic()
        problems = wait_until_anchored(self.settings.db_path, self.names, timeout)
        if problems:
            self.report.problems += [f"{what}: {p}" for p in problems]
            return None
        return time.monotonic() - started

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
        relay.start()
        self.say(f"{name} back")
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
        drained = self._wait_drained(900, f"after the {name} outage")
        if drained is not None:
            self.say(f"outbox drained {drained:.1f} s later")
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
        versions = self.s3.list_object_versions(Bucket=self.bucket).get("Versions", [])
        keys = sorted(v["Key"] for v in versions)
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
               checkpoint_interval: float = 0.2, seed: int = 20261128) -> OutageReport:
    """The outages in order: S3 cut for `s3_down` s, a real Postgres restart, Postgres cut for
    `pg_down` s. `backoff=None` keeps the production outbox. Long runs want a checkpoint interval
    of seconds: moto deep-copies every object version on each listing (the S3 anchor lists a key's
    versions on every publish), so thousands of checkpoints exhaust its memory."""
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

"""Slack figures: `/what-happened` end to end over HTTP, signed as Slack signs it (issue 6).

    python bench/slack.py                     # 1,000,000 entries in a temporary directory
    python bench/slack.py --quick             # 5,000 entries, 100 samples: the CI smoke test
    python bench/slack.py --entries 10000000 --data-dir /tmp/runlog-10m/data   # the issue's store

The store is built as bench/query.py builds it (its `build`: the real writer, batches of 1,000,
20 in flight, runs of 10 steps, one 1,000-step run spread over the middle half of the log). A
store given with --data-dir is kept, and reused when it holds --entries entries. Before serving,
a checkpoint is signed at the head (as a clean stop leaves it), so start-up verifies nothing.

Then `runlog serve` runs with a Slack signing secret, and one client sends, sequentially over
keep-alive, `POST /slack/commands` form bodies as Slack sends them, each signed (v0) at send time
with its own trigger_id (the appliance refuses a replayed signature): the 1,000-step run by its
32-hex ID, by an 8-hex prefix, and `recent`. Each answer is checked to be the summary (or list)
and its p50/p99 printed. The time includes signing the request in the client; Slack allows 3 s.
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import httpx

from ingest import ADMIN_TOKEN, runlog_server  # bench/ is this script's sys.path[0]
from query import LONG_STEPS, LONG_TRACE_ID, _existing_size, build, percentiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.checkpointer import load_signers  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from appliance.slack.signing import signature  # noqa: E402
from appliance.store.checkpoints import cut_checkpoint  # noqa: E402
from appliance.store.db import connect  # noqa: E402

SECRET = "bench-slack-signing-secret"
TARGET_P99_MS = 300


def checkpoint_head(settings: Settings) -> int:
    """Sign a checkpoint of the whole store, as `runlog serve` does at a clean stop; its size."""
    conn = connect(settings.db_path, synchronous=settings.synchronous)
    try:
        checkpoint, _ = cut_checkpoint(conn, load_signers(settings.keys_dir, settings.origin),
                                       now=datetime.now(timezone.utc))
        return checkpoint.size
    finally:
        conn.close()


class SlackClient:
    """Sends slash commands as Slack does: form-encoded, signed at send time, a fresh trigger_id each."""

    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=30)
        self._sent = 0

    def close(self) -> None:
        self._http.close()

    def command(self, text: str) -> tuple[float, dict]:
        self._sent += 1
        started = time.perf_counter()
        body = urlencode({
            "token": "legacy", "team_id": "T0BENCH", "team_domain": "bench", "channel_id": "C0BENCH",
            "channel_name": "ops", "user_id": "U0BENCH", "user_name": "oncall", "command": "/what-happened",
            "text": text, "api_app_id": "A0BENCH",
            "response_url": "https://hooks.slack.com/commands/T0BENCH/1/bench",
            "trigger_id": f"1.2.{os.getpid()}-{self._sent}"}).encode()
        timestamp = str(math.floor(time.time()))
        response = self._http.post("/slack/commands", content=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature(SECRET, timestamp, body)})
        elapsed = (time.perf_counter() - started) * 1e3
        response.raise_for_status()
        return elapsed, response.json()


def timed(client: SlackClient, text: str, expect: str, samples: int, warmup: int = 20) -> list[float]:
    out = []
    for i in range(warmup + samples):
        elapsed, message = client.command(text)
        if expect not in str(message["blocks"]):
            raise SystemExit(f"/what-happened {text}: the answer lacks {expect!r}: {str(message)[:500]}")
        if i >= warmup:
            out.append(elapsed)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000, help="requests measured per figure")
    parser.add_argument("--quick", action="store_true", help="5,000 entries, 100 samples: a smoke test")
    parser.add_argument("--data-dir", type=Path, help="build (or reuse) the store here and keep it")
    args = parser.parse_args(argv)
    entries, samples = (5_000, 100) if args.quick else (args.entries, args.samples)
    temporary = args.data_dir is None
    work = Path(tempfile.mkdtemp(prefix="runlog-bench-slack-")) if temporary else args.data_dir.parent
    data_dir = work / "data" if temporary else args.data_dir
    settings = Settings(data_dir=data_dir, keys_dir=data_dir / "keys", admin_token=ADMIN_TOKEN)
    try:
        print(f"runlog Slack bench, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores, "
              f"load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}, {entries:,} entries, {samples} samples each")
        work.mkdir(parents=True, exist_ok=True)
        if _existing_size(settings.db_path) == entries:
            print(f"  reusing the store at {settings.db_path} ({entries:,} entries)")
        else:
            started = time.perf_counter()
            rate = build(settings, entries)
            print(f"  built {entries:,} entries through the writer in {time.perf_counter() - started:,.1f} s "
                  f"({rate:,.0f} entries/s)", flush=True)
        print(f"  checkpoint signed at the head: size {checkpoint_head(settings):,}", flush=True)
        server = runlog_server(data_dir, work / f"slack-serve-{os.getpid()}.log")
        server.env["RUNLOG_SLACK_SIGNING_SECRET"] = SECRET
        server.start(600)
        client = SlackClient(server.url)
        try:
            print(f"  runlog serve start-up: {server.startup_seconds:,.1f} s", flush=True)
            figures = {
                f"/what-happened <32-hex ID>, {LONG_STEPS:,}-step run": timed(
                    client, LONG_TRACE_ID, f"*Steps*\\n{LONG_STEPS:,}", samples),
                f"/what-happened <8-hex prefix>, {LONG_STEPS:,}-step run": timed(
                    client, LONG_TRACE_ID[:8], f"*Steps*\\n{LONG_STEPS:,}", samples),
                "/what-happened recent (10 runs)": timed(client, "recent", "runlog_show", samples),
            }
        finally:
            client.close()
            server.stop()
        for label, samples_ms in figures.items():
            print(f"  {label:<48} {percentiles(samples_ms)}")
        print(f"  target (issue 6): p99 < {TARGET_P99_MS} ms for the signed slash command; Slack allows 3,000 ms")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

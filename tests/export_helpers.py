"""A real store for the export tests: init_appliance's keys, the real Writer on a settable clock,
and checkpoints and daily roots cut by appliance.store.checkpoints."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from appliance.checkpointer import load_signers
from appliance.core.sequencer import Event
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store import checkpoints as cps
from appliance.store.db import connect
from appliance.store.export import export_bundle
from appliance.store.writer import AppendRequest, Writer

ORIGIN = "runlog.test/export"
START = datetime(2026, 11, 26, 22, 0, tzinfo=timezone.utc)


def trace(n: int) -> str:
    return f"{n:032x}"


class Store:
    """A store at `data_dir` with a writer on a hand-moved clock."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, keys_dir=data_dir / "keys", origin=ORIGIN, synchronous="NORMAL")
        init_appliance(self.settings)
        self.signers = load_signers(self.settings.keys_dir, ORIGIN)
        self.clock = START
        self.writer = Writer(self.settings.db_path, origin=ORIGIN, signer=self.signers.log, clock=lambda: self.clock,
                             synchronous="NORMAL")
        self.writer.start()
        self.conn = connect(self.settings.db_path, synchronous="NORMAL")

    @property
    def log_key(self) -> str:
        return self.signers.log.verifier().to_text()

    def run(self, trace_id: str, steps: int, *, closed: bool, batch: int = 1000, noise: int = 0) -> None:
        """Append `steps` events of `trace_id` (the last final when `closed`), each batch followed by
        `noise` events of other runs."""
        for start in range(0, steps, batch):
            events = []
            for n in range(start, min(steps, start + batch)):
                last = n == steps - 1 and closed
                events.append(Event(trace_id=trace_id, step=f"step {n}", status="succeeded" if last else "info",
                                    ts="2026-11-26T21:00:00Z", source="ci", attrs={"n": n}, final=last))
            self.writer.append_sync(AppendRequest(events, "ci"))
            if noise:
                self.writer.append_sync(AppendRequest(
                    [Event(trace_id=trace(0xFFFF00 + i), step="other", status="info", ts="2026-11-26T21:00:00Z",
                           source="ci") for i in range(noise)], "ci"))

    def advance(self, **delta: float) -> None:
        self.clock += timedelta(**delta)

    def checkpoint(self) -> None:
        cps.cut_daily_roots(self.conn, self.signers, now=self.clock)
        cps.cut_checkpoint(self.conn, self.signers, now=self.clock, anchors=["local"])

    def bundle(self, trace_id: str, **kwargs) -> dict:
        return export_bundle(self.conn, trace_id, signer=self.signers.log, clock_key=self.signers.clock.verifier().to_text(),
                             exported_at="2026-11-27T00:00:00Z", **kwargs)

    def close(self) -> None:
        self.writer.stop()
        self.conn.close()


def dump(bundle: dict) -> bytes:
    return json.dumps(bundle).encode("utf-8")

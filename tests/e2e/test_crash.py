"""Crash safety: kill -9 the server at random moments while clients stream appends, restart it,
and check that every acknowledged event is present exactly once, idempotent retries did not
duplicate anything, and the whole store verifies. 20 kill points here; reliability/ runs more."""

import json
import random
import sqlite3
import threading
import time
import uuid

import httpx

from appliance.core.chain import RunChains, verify_global_chain
from tests.e2e.server import ADMIN_TOKEN, Server

KILLS = 20
CLIENTS = 4


class Producer(threading.Thread):
    """Appends events one per request; an unacknowledged event is retried with the same key."""

    def __init__(self, n: int, url: str) -> None:
        super().__init__(daemon=True)
        self.n, self.url = n, url
        self.trace_id = f"{n + 1:032x}"
        self.acked: dict[str, tuple[int, str]] = {}  # event id -> (seq, entry hash)
        self.pending: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        http = httpx.Client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=2)
        while not self.stop.is_set():
            event_id = self.pending or uuid.uuid4().hex
            self.pending = event_id
            body = {"trace_id": self.trace_id, "step": "tick", "status": "info", "attrs": {"id": event_id}}
            try:
                response = http.post(f"{self.url}/v1/events", json=body, headers={"Idempotency-Key": event_id})
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            if response.status_code in (200, 201):
                receipt = response.json()
                self.acked[event_id] = (receipt["first_seq"], receipt["entry_hashes"][0])
                self.pending = None
            else:
                time.sleep(0.02)


def test_kill_9_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261128)
    server = Server(tmp_path / "data").start()
    producers = [Producer(n, server.url) for n in range(CLIENTS)]
    for p in producers:
        p.start()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.6))
            server.kill()
            server = Server(tmp_path / "data", port=server.port).start()  # same port: producers reconnect
        time.sleep(0.5)
    finally:
        for p in producers:
            p.stop.set()
        for p in producers:
            p.join(10)
        server.kill()

    conn = sqlite3.connect(tmp_path / "data" / "runlog.sqlite")
    rows = conn.execute("SELECT seq, data, hash FROM entries ORDER BY seq").fetchall()
    runs = RunChains()
    assert verify_global_chain([(data, digest) for _, data, digest in rows], runs=runs).size == len(rows)
    by_id: dict[str, list[tuple[int, str]]] = {}
    for seq, data, digest in rows:
        by_id.setdefault(json.loads(data)["attrs"]["id"], []).append((seq, bytes(digest).hex()))
    duplicated = {event_id: places for event_id, places in by_id.items() if len(places) > 1}
    assert not duplicated
    acked = {event_id: place for p in producers for event_id, place in p.acked.items()}
    assert len(acked) > KILLS, "the producers should have made progress between kills"
    for event_id, place in acked.items():
        assert by_id.get(event_id) == [place], f"acknowledged event {event_id} lost or moved"

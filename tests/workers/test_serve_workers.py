"""`runlog serve` with RUNLOG_WORKERS=2, as a real process tree on 127.0.0.1: both workers serve,
one chain results, a killed worker is replaced, workers never outlive the primary, SIGTERM stops
everything with a final checkpoint, a taken port fails at start in both modes with one line."""

import os
import re
import signal
import socket
import sqlite3
import threading
import time

import httpx
import pytest

from appliance.core.chain import RunChains, verify_global_chain
from tests.e2e.server import ADMIN_TOKEN, Server


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _workers(server: Server) -> list[int]:
    return _children(server.process.pid)


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path / "data", RUNLOG_WORKERS="2").start()
    _wait(lambda: len(_workers(server)) == 2)
    yield server
    server.kill()


def _admin(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def test_many_connections_spread_over_both_workers_into_one_verifying_chain(server):
    workers = _workers(server)
    cpu_before = {pid: _cpu(pid) for pid in workers}
    errors: list[BaseException] = []
    traces: list[str] = []

    def producer(n: int) -> None:
        try:
            for r in range(4):
                with _admin(server) as http:  # a new connection per run: the kernel spreads them
                    started = http.post("/v1/runs", json={"step": f"job {n}.{r}"})
                    assert started.status_code == 201, started.text
                    trace = started.json()["trace_id"]
                    for step in range(5):
                        done = http.post("/v1/events", json={"trace_id": trace, "step": f"s{step}", "status": "info",
                                                             "ts": "2026-11-28T10:00:00Z", "attrs": {"n": n}})
                        assert done.status_code == 201, done.text
                    traces.append(trace)
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(_cpu(pid) > cpu_before[pid] for pid in workers), "both workers served requests"
    with _admin(server) as http:
        size = http.get("/healthz").json()["tree_size"]
        assert size == 8 * 4 * 6
        entries = [http.get(f"/v1/entries/{seq}").json() for seq in range(size)]
        metrics = http.get("/metrics").text
    runs = RunChains()
    verify_global_chain([(e["canonical"].encode(), bytes.fromhex(e["entry_hash"])) for e in entries], runs=runs)
    assert len(list(runs.states())) == 32
    # /metrics sums both workers' requests, whichever worker answers it.
    assert 'runlog_http_request_duration_seconds_count{route="/v1/events",method="POST",status="201"} 160' in metrics
    assert f"runlog_events_ingested_total {size}" in metrics


def _cpu(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().split(") ")[1].split()
    return int(fields[11]) + int(fields[12])


def test_a_killed_worker_is_replaced_and_the_appliance_keeps_answering(server):
    first, second = _workers(server)
    os.kill(first, signal.SIGKILL)
    _wait(lambda: len(_workers(server)) == 2 and first not in _workers(server))
    assert second in _workers(server)
    for _ in range(20):  # every connection is answered, whichever worker the kernel picks
        with _admin(server) as http:
            _wait(lambda: http.get("/healthz").status_code == 200)
    assert "exited with status -9; restarting it" in server.output()


def test_a_worker_that_keeps_dying_stops_the_appliance_with_one_line(server):
    _, survivor = _workers(server)
    deaths = 0
    deadline = time.monotonic() + 60
    while server.process.poll() is None and time.monotonic() < deadline:
        for pid in _workers(server):
            if pid != survivor and _alive(pid):
                os.kill(pid, signal.SIGKILL)
                deaths += 1
        time.sleep(0.05)
    assert server.process.wait(timeout=30) == 1
    output = server.output()
    assert re.search(r"runlog: HTTP worker [01] died 5 times within 60 s; stopping", output), output[-2000:]
    assert "Traceback" not in output and deaths == 6
    assert not _alive(survivor)  # stopped with the rest, not orphaned


def test_workers_die_with_the_primary_and_leave_the_port_free(server):
    workers = _workers(server)
    server.kill()
    _wait(lambda: not any(_alive(pid) for pid in workers), seconds=5)
    _wait(lambda: _bindable(server.port), seconds=5)


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_stops_the_workers_then_drains_and_cuts_a_final_checkpoint(server):
    with _admin(server) as http:
        trace = http.post("/v1/runs", json={}).json()["trace_id"]
        http.post("/v1/events", json={"trace_id": trace, "step": "last", "status": "succeeded",
                                      "ts": "2026-11-28T10:00:00Z", "final": True})
    workers = _workers(server)
    assert server.terminate() == 0
    assert not any(_alive(pid) for pid in workers)
    conn = sqlite3.connect(server.data_dir / "runlog.sqlite")
    assert conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0] == 2
    assert "workers ready" in server.output()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_port_is_one_line_and_status_1_in_both_modes(tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(tmp_path / "data", port=port, RUNLOG_WORKERS=workers)
        with pytest.raises(RuntimeError, match="exited with 1"):
            server.start()
        output = server.output()
    assert f"runlog: cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert "Traceback" not in output and '"serving"' not in output

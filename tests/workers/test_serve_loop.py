"""`runlog serve` on the event loop RUNLOG_LOOP names, in one process and with workers: every
process of the tree runs on it (uvloop's extension is loaded, or not), serves an append, and
stops cleanly on SIGTERM with the final checkpoint."""

import time

import httpx
import pytest

from tests.e2e.server import ADMIN_TOKEN, Server


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _loads_uvloop(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return "/uvloop/" in maps.read()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("loop, uvloop", [("asyncio", False), ("auto", True)])
def test_every_process_runs_on_the_chosen_loop(tmp_path, workers, loop, uvloop):
    server = Server(tmp_path / "data", RUNLOG_WORKERS=workers, RUNLOG_LOOP=loop).start()
    try:
        processes = [server.process.pid]
        if workers == "2":
            deadline = time.monotonic() + 30  # both workers connected to the primary: past their imports
            while "workers ready" not in server.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            processes += _children(server.process.pid)
        assert len(processes) == int(workers) + (workers != "1")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as http:
            answer = http.post("/v1/events", json={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "step": "s",
                                                   "status": "info"})
            assert answer.status_code == 201, answer.text
        assert [_loads_uvloop(pid) for pid in processes] == [uvloop] * len(processes)
        assert server.terminate() == 0
        assert "stopped" in server.output()
    finally:
        server.kill()

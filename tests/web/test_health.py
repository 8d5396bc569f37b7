"""`GET /healthz` reports a store that refuses appends (disk full, read-only, I/O error): found by
the disk-trouble suite, where every append got a 503 while the health check still said 200."""

import sqlite3
import time

from litestar.testing import TestClient

from appliance.settings import Settings
from appliance.web import routes_read
from appliance.web.app import create_app

ADMIN = "admin-token-for-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _event(step: str) -> dict:
    return {"trace_id": TRACE, "step": step, "status": "info"}


def test_health_fails_while_commits_fail_and_recovers_after_one_succeeds(tmp_path):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path), "RUNLOG_ADMIN_TOKEN": ADMIN})
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=_event("before"), headers=AUTH).status_code == 201
        assert client.get("/healthz").status_code == 200
        # The disk stands in for a full one: every insert into entries fails inside the commit.
        saboteur = sqlite3.connect(settings.db_path)
        saboteur.execute("CREATE TRIGGER disk_full BEFORE INSERT ON entries "
                         "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        saboteur.commit()
        refused = client.post("/v1/events", json=_event("refused"), headers=AUTH)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
        assert refused.headers["retry-after"] == "1"
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["checks"]["store"] == "failing: the last commit failed: database or disk is full"
        saboteur.execute("DROP TRIGGER disk_full")
        saboteur.commit()
        saboteur.close()
        assert client.post("/v1/events", json=_event("after"), headers=AUTH).status_code == 201
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["checks"]["store"] == "ok"


def test_a_failure_long_past_with_no_attempt_since_is_no_longer_reported(tmp_path):
    # No write probe: an instance a load balancer took out of rotation must be able to come back.
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path), "RUNLOG_ADMIN_TOKEN": ADMIN})
    with TestClient(create_app(settings)) as client:
        writer = client.app.state.appliance.writer
        writer.last_failure = (time.monotonic() - routes_read.STORE_FAILURE_MEMORY - 1, "database or disk is full")
        assert client.get("/healthz").status_code == 200
        writer.last_failure = (time.monotonic(), "database or disk is full")
        assert client.get("/healthz").status_code == 503

"""`GET /metrics` through the real app: Prometheus text format, log size, writer, checkpoint age
and per-anchor lag and errors (a real local-directory anchor)."""

import re

from litestar.testing import TestClient

from appliance.settings import Settings
from appliance.web.app import create_app

ADMIN = "admin-token-for-metrics-0123456789ab"
SAMPLE = re.compile(r'^[a-z_]+(\{anchor="[^"]+"\})? -?[0-9.e+-]+$')


def parse(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith(("# HELP runlog_", "# TYPE runlog_")), line
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        values[re.sub(r"\{.*\}", "", name)] = float(value)
    return values


def test_metrics_show_the_log_checkpoints_and_anchor_lag(tmp_path):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path / "data"), "RUNLOG_ADMIN_TOKEN": ADMIN,
                                  "RUNLOG_ANCHOR_DIR": str(tmp_path / "anchor")})
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(settings)) as client:
        for step in ("a", "b", "c"):
            assert client.post("/v1/events", json={"trace_id": "e" * 32, "step": step, "status": "info"},
                               headers=headers).status_code == 201
        assert client.post("/v1/checkpoints", headers=headers).status_code in (200, 201)
        response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
        values = parse(response.text)
    assert values["runlog_entries"] == 3 and values["runlog_checkpoint_size"] == 3
    assert values["runlog_writer_up"] == 1 and values["runlog_writer_commits_total"] >= 1
    assert 0 <= values["runlog_checkpoint_age_seconds"] < 60
    assert "runlog_anchor_pending" in values and values["runlog_anchor_failed"] == 0

"""`GET /metrics` through the real app, read with prometheus-client's own text parser: log size,
events ingested, writer queue and commit sizes, request latency by route and status, store size,
checkpoint age and per-anchor lag and errors (a real local-directory anchor)."""

from pathlib import Path

from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from appliance.settings import Settings
from appliance.web.app import create_app
from appliance.web.instruments import Histogram

ADMIN = "admin-token-for-metrics-0123456789ab"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def scrape(client: TestClient) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("runlog_") and family.documentation, family.name
        families[family.name] = family.samples
    return families


def value(families: dict[str, list], sample: str, **labels: str) -> float:
    for samples in families.values():
        for s in samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError(f"{sample} {labels} in {[s for f in families.values() for s in f if s.name == sample]}")


def test_metrics_parse_and_show_the_log_requests_writer_store_checkpoints_and_anchors(tmp_path):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path / "data"), "RUNLOG_ADMIN_TOKEN": ADMIN,
                                  "RUNLOG_ANCHOR_DIR": str(tmp_path / "anchor")})
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(settings)) as client:
        for step in ("a", "b", "c"):
            assert client.post("/v1/events", json={"trace_id": "e" * 32, "step": step, "status": "info"},
                               headers=headers).status_code == 201
        batch = [{"trace_id": "d" * 32, "step": f"s{i}", "status": "info"} for i in range(40)]
        assert client.post("/v1/events", json=batch, headers=headers).status_code == 201
        assert client.post("/v1/events", json={"step": "x"}, headers=headers).status_code == 400
        assert client.get(f"/v1/runs/{'e' * 32}", headers=headers).status_code == 200
        assert client.get("/no/such/route").status_code == 404
        for invented in ("FOOBAR", "BREW", "X" * 200):  # a label per invented method would grow without bound
            assert client.request(invented, "/v1/events").status_code in (400, 404, 405)
        assert client.post("/v1/checkpoints", headers=headers).status_code in (200, 201)
        families = scrape(client)

    assert value(families, "runlog_entries") == 43 and value(families, "runlog_checkpoint_size") == 43
    assert value(families, "runlog_events_ingested_total") == 43
    assert value(families, "runlog_writer_up") == 1 and value(families, "runlog_writer_commits_total") >= 2
    assert value(families, "runlog_writer_queue_depth") == 0
    assert value(families, "runlog_writer_commit_entries_count") >= 2
    assert value(families, "runlog_writer_commit_entries_sum") == 43
    assert value(families, "runlog_writer_commit_entries_bucket", le="50.0") == value(
        families, "runlog_writer_commit_entries_count")
    assert value(families, "runlog_writer_commit_entries_bucket", le="20.0") <= 3

    latency = "runlog_http_request_duration_seconds"
    assert value(families, f"{latency}_count", route="/v1/events", method="POST", status="201") == 4
    assert value(families, f"{latency}_count", route="/v1/events", method="POST", status="400") == 1
    assert value(families, f"{latency}_count", route="/v1/runs/{trace_id}", method="GET", status="200") == 1
    assert value(families, f"{latency}_count", route="unmatched", method="GET", status="404") == 1
    methods = {s.labels["method"] for s in families[latency] if "method" in s.labels}
    assert methods == {"GET", "POST", "OTHER"}
    assert sum(s.value for s in families[latency] if s.name.endswith("_count") and s.labels["method"] == "OTHER") == 3
    assert value(families, f"{latency}_bucket", route="/v1/events", method="POST", status="201", le="+Inf") == 4
    assert value(families, f"{latency}_sum", route="/v1/events", method="POST", status="201") > 0

    assert value(families, "runlog_store_bytes", file="db") > 0
    assert 0 <= value(families, "runlog_checkpoint_age_seconds") < 60
    anchor = "local-dir"
    assert families["runlog_anchor_pending"] and value(families, "runlog_anchor_failed") == 0
    assert value(families, "runlog_anchor_lag_seconds") >= 0
    assert value(families, "runlog_anchor_published_size") in (0, 43), anchor
    documented = OPERATIONS.read_text(encoding="utf-8")
    assert not [name for name in families if f"`{name}" not in documented], "docs/OPERATIONS.md lists every metric"


def test_labels_with_quotes_backslashes_and_newlines_are_escaped():
    from appliance.web.routes_metrics import _Exposition

    out = _Exposition()
    histogram = Histogram((1.0,))
    histogram.observe(0.5)
    histogram.observe(3)
    out.histogram("runlog_test_seconds", "A test.", [({"route": 'a"b\\c\nd'}, histogram)])
    [family] = text_string_to_metric_families(out.text())
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets == {"1.0": 1, "+Inf": 2}
    assert {s.labels["route"] for s in family.samples} == {'a"b\\c\nd'}


def test_histogram_buckets_are_upper_bounds():
    histogram = Histogram((1, 5))
    for observed in (1, 1.0001, 5, 6):
        histogram.observe(observed)
    assert histogram.cumulative() == [("1.0", 1), ("5.0", 3), ("+Inf", 4)]
    assert histogram.sum == 13.0001

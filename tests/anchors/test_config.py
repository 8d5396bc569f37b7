"""RUNLOG_ANCHOR_* settings and the anchors built from them; /healthz with anchors configured."""

import time

import pytest
from litestar.testing import TestClient

from appliance.anchors.base import AnchoredCheckpoint
from appliance.anchors.config import build_anchors
from appliance.anchors.localdir import LocalDirAnchor
from appliance.core.checkpoint import Checkpoint, sign_checkpoint
from appliance.service import init_appliance, open_appliance
from appliance.settings import Settings, SettingsError
from appliance.web.app import create_app
from tests.anchors.conftest import add_checkpoint

DSN = "host=db.internal port=6432 dbname=evidence user=runlog password=s3cret"


def test_no_anchors_by_default():
    settings = Settings.from_env({})
    assert (settings.anchor_postgres_dsn, settings.anchor_s3_bucket, settings.anchor_dir) == (None, None, None)
    assert (settings.anchor_postgres_table, settings.anchor_s3_prefix, settings.anchor_s3_retention_days,
            settings.anchor_lag_threshold) == ("runlog_checkpoints", "", 400, 3600.0)
    assert build_anchors(settings) == ()


def test_every_anchor_variable_is_read_and_anchors_are_built_in_order(tmp_path):
    settings = Settings.from_env({
        "RUNLOG_ANCHOR_POSTGRES_DSN": DSN, "RUNLOG_ANCHOR_POSTGRES_TABLE": "audit.checkpoints",
        "RUNLOG_ANCHOR_S3_BUCKET": "evidence-bucket", "RUNLOG_ANCHOR_S3_PREFIX": "runlog/",
        "RUNLOG_ANCHOR_S3_ENDPOINT": "http://127.0.0.1:9000", "RUNLOG_ANCHOR_S3_REGION": "eu-west-1",
        "RUNLOG_ANCHOR_S3_RETENTION_DAYS": "30", "RUNLOG_ANCHOR_DIR": str(tmp_path),
        "RUNLOG_ANCHOR_LAG_THRESHOLD": "90"})
    assert settings.anchor_postgres_dsn == DSN and settings.anchor_s3_retention_days == 30
    assert settings.anchor_dir == tmp_path and settings.anchor_lag_threshold == 90.0
    assert "s3cret" not in repr(settings)
    assert [a.name for a in build_anchors(settings)] == [
        "postgres:db.internal:6432/evidence/audit.checkpoints", "s3:evidence-bucket/runlog/", f"dir:{tmp_path}"]


def test_the_dsn_can_come_from_a_file(tmp_path):
    secret = tmp_path / "dsn"
    secret.write_text(DSN + "\n")
    assert Settings.from_env({"RUNLOG_ANCHOR_POSTGRES_DSN_FILE": str(secret)}).anchor_postgres_dsn == DSN


@pytest.mark.parametrize("variable, value", [
    ("RUNLOG_ANCHOR_POSTGRES_TABLE", "x; DROP TABLE y"), ("RUNLOG_ANCHOR_S3_BUCKET", "a"),
    ("RUNLOG_ANCHOR_S3_BUCKET", "bad bucket"), ("RUNLOG_ANCHOR_S3_PREFIX", "has space/"),
    ("RUNLOG_ANCHOR_S3_ENDPOINT", "ftp://x"), ("RUNLOG_ANCHOR_S3_REGION", "eu west"),
    ("RUNLOG_ANCHOR_S3_RETENTION_DAYS", "0"), ("RUNLOG_ANCHOR_LAG_THRESHOLD", "-1"),
    ("RUNLOG_ANCHOR_POSTGRES_DSN", "host=x\tdbname=y"),
])
def test_bad_values_name_their_variable(variable, value):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})
    assert refused.value.variable == variable


def test_an_unparseable_dsn_is_refused_when_building_anchors():
    settings = Settings.from_env({"RUNLOG_ANCHOR_POSTGRES_DSN": "not a connection string"})
    with pytest.raises(SettingsError) as refused:
        build_anchors(settings)
    assert refused.value.variable == "RUNLOG_ANCHOR_POSTGRES_DSN"


def test_healthz_reports_each_anchor_and_fails_on_a_fork(tmp_path):
    anchor_dir = tmp_path / "anchor"
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path / "data"), "RUNLOG_ANCHOR_DIR": str(anchor_dir)})
    init_appliance(settings)
    appliance = open_appliance(settings)
    try:
        assert [a.name for a in appliance.anchors] == [f"dir:{anchor_dir}"] and appliance.outbox.running
        with TestClient(create_app(settings, appliance=appliance)) as client:
            ok = client.get("/healthz")
            assert ok.status_code == 200 and ok.json()["checks"][f"anchor dir:{anchor_dir}"] == "ok"

            def note(size: int, root: bytes) -> str:
                return sign_checkpoint(Checkpoint(settings.origin, size, root), appliance.log_signer).decode()

            LocalDirAnchor(anchor_dir, origin=settings.origin).publish(
                AnchoredCheckpoint(settings.origin, 0, note(0, b"\x01" * 32)))
            add_checkpoint(settings.db_path, 0, note(0, bytes(32)))
            appliance.outbox.wake()
            for _ in range(200):
                health = client.get("/healthz")
                if health.status_code == 503:
                    break
                time.sleep(0.05)
            check = health.json()["checks"][f"anchor dir:{anchor_dir}"]
            assert health.status_code == 503 and health.json()["status"] == "failing"
            assert check.startswith(f"fork: dir:{anchor_dir} already holds a different checkpoint for size 0")
    finally:
        appliance.close()
    assert not appliance.outbox.running

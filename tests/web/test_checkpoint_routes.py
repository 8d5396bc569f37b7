"""`/v1/checkpoints` through the real app (Litestar TestClient, real SQLite files): the signed
notes byte for byte as text/plain without a token, the daily-root listing, 404s in the JSON error
shape, and the admin-only on-demand cut. The store is prepared with the real Writer on an injected
clock so the app, started today, finds three days that are over and cuts their daily roots."""

from datetime import datetime, time, timedelta, timezone

import pytest
from litestar.testing import TestClient

from appliance.core.checkpoint import open_checkpoint
from appliance.core.cosignature import CosignatureVerifier
from appliance.core.keys import NoteVerifier
from appliance.core.sequencer import Event
from appliance.keyfile import load_signer
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store.db import connect
from appliance.store.tokens import create_token
from appliance.store.writer import AppendRequest, Writer
from appliance.web.app import create_app

ADMIN = "admin-token-for-checkpoint-tests-0123456789"
TODAY = datetime.now(timezone.utc).date()
DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]


def settings_for(data_dir) -> Settings:
    return Settings.from_env({"RUNLOG_DATA_DIR": str(data_dir), "RUNLOG_ADMIN_TOKEN": ADMIN,
                              "RUNLOG_SYNCHRONOUS": "NORMAL"})


def append_on(settings: Settings, moments: list[datetime]) -> None:
    """One entry at each moment, through the real Writer reading those moments as its clock."""
    clock = iter(moments)
    writer = Writer(settings.db_path, origin=settings.origin, signer=load_signer(settings.keys_dir / "log.key"),
                    clock=lambda: next(clock), synchronous="NORMAL")
    writer.start()
    for n in range(len(moments)):
        writer.append_sync(AppendRequest([Event(trace_id=f"{n + 1:032x}", step="s", status="info",
                                                ts="2026-01-01T00:00:00Z", source="ci")], "ci"))
    writer.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = settings_for(tmp_path_factory.mktemp("checkpoints"))
    init_appliance(settings)
    at = lambda day, hms: datetime.combine(day, time.fromisoformat(hms), timezone.utc)  # noqa: E731
    append_on(settings, [at(DAYS[0], "10:00:00"), at(DAYS[0], "11:00:00"), at(DAYS[1], "23:59:59.999999")])
    conn = connect(settings.db_path)
    conn.execute("BEGIN IMMEDIATE")
    reader_token = create_token(conn, "reader", {"read"}, now="2026-11-28T00:00:00Z")[0]
    conn.execute("COMMIT")
    with TestClient(create_app(settings)) as client:
        yield client, conn, reader_token
    conn.close()


def stored_note(conn, size: int) -> str:
    return conn.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()[0]


def verify(client, note: str) -> int:
    keys = client.get("/v1/keys").json()
    signed = open_checkpoint(note, NoteVerifier.from_text(keys["log_key"]), origin=keys["origin"],
                             cosigner_verifiers=[CosignatureVerifier.from_text(keys["timestamp_key"])])
    assert len(signed.cosignatures) == 1
    return signed.checkpoint.size


def test_missed_daily_roots_are_cut_when_the_app_starts(api):
    client, conn, _ = api
    response = client.get("/v1/checkpoints", params={"daily": "true"})
    assert response.status_code == 200
    page = response.json()
    assert [(c["day"], c["size"]) for c in page["checkpoints"]] == [(DAYS[2].isoformat(), 3),
                                                                   (DAYS[1].isoformat(), 3), (DAYS[0].isoformat(), 2)]
    for item in page["checkpoints"]:
        assert item["note"] == stored_note(conn, item["size"]) and verify(client, item["note"]) == item["size"]


def test_latest_and_by_size_are_the_exact_notes_as_text(api):
    client, conn, _ = api
    latest = client.get("/v1/checkpoints/latest")
    assert latest.status_code == 200 and latest.headers["content-type"] == "text/plain; charset=utf-8"
    size = conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0]
    assert latest.content == stored_note(conn, size).encode() and verify(client, latest.text) == size
    by_size = client.get("/v1/checkpoints/2")
    assert by_size.status_code == 200 and by_size.headers["content-type"].startswith("text/plain")
    assert by_size.text == stored_note(conn, 2)


@pytest.mark.parametrize("path", ["/v1/checkpoints/1", "/v1/checkpoints/999", "/v1/checkpoints/-1"])
def test_a_missing_checkpoint_is_a_json_404(api, path):
    response = api[0].get(path)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_listings_page_with_a_cursor(api):
    client = api[0]
    first = client.get("/v1/checkpoints", params={"daily": "true", "limit": 2}).json()
    assert len(first["checkpoints"]) == 2 and first["next_cursor"] == DAYS[1].isoformat()
    rest = client.get("/v1/checkpoints", params={"daily": "true", "limit": 2, "cursor": first["next_cursor"]}).json()
    assert [c["day"] for c in rest["checkpoints"]] == [DAYS[0].isoformat()] and rest["next_cursor"] is None
    sizes = [c["size"] for c in client.get("/v1/checkpoints").json()["checkpoints"]]
    assert sizes == sorted(sizes, reverse=True) and {2, 3} <= set(sizes)
    assert all(c["day"] is None for c in client.get("/v1/checkpoints").json()["checkpoints"])


@pytest.mark.parametrize("params, field", [({"daily": "true", "cursor": "yesterday"}, "cursor"),
                                           ({"cursor": "ten"}, "cursor"), ({"limit": 0}, "limit")])
def test_bad_listing_parameters_name_the_field(api, params, field):
    response = api[0].get("/v1/checkpoints", params=params)
    assert response.status_code == 400 and response.json()["error"]["field"] == field


def test_on_demand_cut_is_admin_only(api):
    client, conn, reader = api
    assert client.post("/v1/checkpoints").status_code == 401
    assert client.post("/v1/checkpoints", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    admin = {"Authorization": f"Bearer {ADMIN}"}
    appended = client.post("/v1/events", json={"trace_id": "e" * 32, "step": "x", "status": "info"}, headers=admin)
    assert appended.status_code == 201
    size = client.get("/healthz").json()["tree_size"]
    cut = client.post("/v1/checkpoints", headers=admin)
    assert cut.status_code == 201 and cut.headers["content-type"] == "text/plain; charset=utf-8"
    assert verify(client, cut.text) == size and cut.text == stored_note(conn, size)
    again = client.post("/v1/checkpoints", headers=admin)
    assert again.status_code == 200 and again.text == cut.text == client.get("/v1/checkpoints/latest").text


def test_an_appliance_without_checkpoints_answers_404(tmp_path):
    settings = settings_for(tmp_path)
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/checkpoints/latest")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert client.get("/v1/checkpoints", params={"daily": "true"}).json() == {"checkpoints": [],
                                                                                  "next_cursor": None}


def test_shutdown_signs_what_was_acknowledged_and_queues_it_for_the_anchors(tmp_path):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path / "data"), "RUNLOG_ADMIN_TOKEN": ADMIN,
                                  "RUNLOG_ANCHOR_DIR": str(tmp_path / "anchor")})
    with TestClient(create_app(settings)) as client:
        (anchor,) = client.app.state.appliance.anchors
        for n in range(3):
            client.post("/v1/events", json={"trace_id": f"{n + 1:032x}", "step": "x", "status": "info"},
                        headers={"Authorization": f"Bearer {ADMIN}"})
    conn = connect(settings.db_path, readonly=True)
    assert conn.execute("SELECT max(size) FROM checkpoints").fetchone()[0] == 3
    assert conn.execute("SELECT anchor, size FROM anchor_outbox").fetchall() == [(anchor.name, 3)]
    conn.close()

"""Exports over HTTP through the real app (Litestar TestClient, real SQLite, real Writer): the
export scope, JSON bundles and CSV that verify offline, and signed download links: expiry
(freezegun), wrong trace, wrong format, edited signature, replay after expiry, all a bare 403."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from freezegun import freeze_time
from litestar.testing import TestClient

from appliance.core.bundle_verify import verify_bundle
from appliance.core.csv_export import verify_csv
from appliance.core.sequencer import Event
from appliance.keyfile import load_signer
from appliance.service import init_appliance
from appliance.settings import Settings
from appliance.store.db import connect
from appliance.store.tokens import create_token
from appliance.store.writer import AppendRequest, Writer
from appliance.web.app import create_app

ADMIN = "admin-token-for-export-route-tests-0123456789"
RUN, OTHER = f"{1:032x}", f"{2:032x}"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path_factory.mktemp("export-routes")),
                                  "RUNLOG_ADMIN_TOKEN": ADMIN, "RUNLOG_SYNCHRONOUS": "NORMAL",
                                  "RUNLOG_PUBLIC_URL": "https://runlog.example"})
    init_appliance(settings)
    signer = load_signer(settings.keys_dir / "log.key")
    writer = Writer(settings.db_path, origin=settings.origin, signer=signer, synchronous="NORMAL")
    writer.start()
    writer.append_sync(AppendRequest([Event(trace_id=RUN, step=name, status=status, ts="2026-01-01T00:00:00Z",
                                            source="ci", final=status == "succeeded", attrs={"note": "=1+1"})
                                      for name, status in (("=cmd|' /C calc'!A0", "started"), ("done", "succeeded"))],
                                     "ci"))
    writer.append_sync(AppendRequest([Event(trace_id=OTHER, step="x", status="info", ts="2026-01-01T00:00:00Z",
                                            source="ci")], "ci"))
    writer.stop()
    conn = connect(settings.db_path)
    conn.execute("BEGIN IMMEDIATE")
    tokens = {scope: create_token(conn, scope, {scope}, now="2026-11-28T00:00:00Z")[0] for scope in ("read", "export")}
    conn.execute("COMMIT")
    conn.close()
    with TestClient(create_app(settings)) as client:
        yield client, tokens, signer.verifier()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_export_needs_the_export_scope(api):
    client, tokens, _ = api
    assert client.get(f"/v1/runs/{RUN}/export").status_code == 401
    assert client.get(f"/v1/runs/{RUN}/export", headers=auth(tokens["read"])).status_code == 403


def test_json_export_verifies_offline(api):
    client, tokens, key = api
    response = client.get(f"/v1/runs/{RUN}/export?format=json", headers=auth(tokens["export"]))
    assert response.status_code == 200, response.text
    report = verify_bundle(response.content, key=key)
    assert (report.count, report.closed) == (2, True)


def test_csv_export_is_signed_and_neutralised(api):
    client, tokens, key = api
    response = client.get(f"/v1/runs/{RUN}/export?format=csv", headers=auth(tokens["export"]))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    note = base64.b64decode(response.headers["Runlog-Signature"])
    assert verify_csv(response.content, note, key)["rows"] == 2
    text = response.content.decode("utf-8-sig")
    assert ",'=cmd|' /C calc'!A0," in text and "=cmd" not in text.replace("'=cmd", "")


def test_unknown_run_and_bad_input(api):
    client, tokens, _ = api
    assert client.get(f"/v1/runs/{9:032x}/export", headers=auth(tokens["export"])).status_code == 404
    bad = client.get(f"/v1/runs/{RUN}/export?format=xml", headers=auth(tokens["export"]))
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "format"
    assert client.get("/v1/runs/XYZ/export", headers=auth(tokens["export"])).status_code == 400


def make_link(client, token, trace_id=RUN, **body) -> tuple[str, dict]:
    response = client.post(f"/v1/runs/{trace_id}/links", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    assert url.startswith("https://runlog.example/v1/downloads/")
    return urlsplit(url).path + "?" + urlsplit(url).query, response.json()


def test_link_downloads_without_a_token(api):
    client, tokens, key = api
    link, _ = make_link(client, tokens["export"])
    response = client.get(link)
    assert response.status_code == 200
    assert verify_bundle(response.content, key=key).trace_id == RUN
    csv_link, _ = make_link(client, tokens["export"], format="csv")
    assert client.get(csv_link).headers["Runlog-Signature"]


def test_link_needs_export_scope_and_bounds(api):
    client, tokens, _ = api
    assert client.post(f"/v1/runs/{RUN}/links", json={}, headers=auth(tokens["read"])).status_code == 403
    for body in ({"expires_in": 0}, {"expires_in": 7 * 86400 + 1}, {"format": "xml"}):
        assert client.post(f"/v1/runs/{RUN}/links", json=body, headers=auth(tokens["export"])).status_code == 400
    assert client.post(f"/v1/runs/{9:032x}/links", json={}, headers=auth(tokens["export"])).status_code == 404


def assert_bare_403(response) -> None:
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this download link is not valid"


def test_link_expires_and_cannot_be_replayed(api):
    client, tokens, _ = api
    start = datetime.now(timezone.utc)
    with freeze_time(start) as frozen:
        link, body = make_link(client, tokens["export"], expires_in=60)
        assert client.get(link).status_code == 200
        frozen.tick(timedelta(seconds=59))
        assert client.get(link).status_code == 200
        frozen.tick(timedelta(seconds=1))
        assert_bare_403(client.get(link))  # expired
        frozen.tick(timedelta(days=1))
        assert_bare_403(client.get(link))  # replay after expiry


def test_default_link_lives_15_minutes(api):
    client, tokens, _ = api
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with freeze_time(start):
        _, body = make_link(client, tokens["export"])
    assert datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) == start + timedelta(minutes=15)


def test_altered_and_forged_links(api):
    client, tokens, _ = api
    link, _ = make_link(client, tokens["export"])
    path, query = link.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    sig = params["sig"]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    cases = [
        path.replace(RUN, OTHER) + "?" + query,                                   # wrong trace
        path.replace("/json", "/csv") + "?" + query,                              # wrong format
        f"{path}?expires={params['expires']}&sig={flipped}",                      # edited signature
        f"{path}?expires={int(params['expires']) + 3600}&sig={sig}",              # extended expiry
        f"{path}?expires={params['expires']}",                                    # signature removed
        f"{path}?expires=abc&sig=%00",                                            # garbage
        f"/v1/downloads/{RUN}/xml?expires=1&sig=x",                                # forged
    ]
    for case in cases:
        assert_bare_403(client.get(case))

"""Query parameters a route does not document are refused with a 400 naming them (appliance/web/
query_params.py), through the real app: a mistyped filter must not answer as if it had filtered."""

import pytest
from litestar.testing import TestClient

from appliance.settings import Settings
from appliance.web.app import create_app

ADMIN = "admin-token-for-tests-0123456789abcdef"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
PATH_VALUES = {"{trace_id}": TRACE, "{seq}": "0", "{size}": "1", "{fmt}": "json"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path_factory.mktemp("query")),
                                  "RUNLOG_ADMIN_TOKEN": ADMIN})
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json={"trace_id": TRACE, "step": "seed", "status": "info"},
                           headers=AUTH).status_code == 201
        client.post("/v1/checkpoints", headers=AUTH)
        yield client


def documented_gets(client) -> dict[str, set[str]]:
    paths = client.get("/schema/openapi.json").json()["paths"]
    return {path: {p["name"] for p in item["get"].get("parameters", []) if p["in"] == "query"}
            for path, item in paths.items() if "get" in item and path.startswith("/v1/")}


def concrete(path: str) -> str:
    for template, value in PATH_VALUES.items():
        path = path.replace(template, value)
    return path


def test_every_documented_get_refuses_a_parameter_it_does_not_take(client):
    routes = documented_gets(client)
    document = client.get("/schema/openapi.json").json()["paths"]
    assert {"/v1/runs", "/v1/runs/{trace_id}", "/v1/proofs/inclusion", "/v1/checkpoints"} <= set(routes)
    for path, takes in routes.items():
        response = client.get(f"{concrete(path)}?staus=failed", headers=AUTH)
        error = response.json()["error"]
        assert response.status_code == 400 and error["field"] == "staus", (path, response.text)
        assert "400" in document[path]["get"]["responses"], f"{path} does not document its 400"
        assert error["message"] == (f"staus: not a query parameter of {path}; "
                                    + (f"it takes {', '.join(sorted(takes))}" if takes else "it takes none"))


@pytest.mark.parametrize(("query", "status"), [
    ("status=failed", 200),            # documented: answered as before
    ("status=failed&limit=2", 200),
    ("statuss=failed", 400),
    ("status=failed&Limit=2", 400),    # names are case-sensitive, as documented
])
def test_runs_listing(client, query, status):
    assert client.get(f"/v1/runs?{query}", headers=AUTH).status_code == status


def test_the_check_comes_before_authentication(client):
    assert client.get("/v1/runs?staus=failed").status_code == 400
    assert client.get("/v1/runs?status=failed").status_code == 401


@pytest.mark.parametrize("path", ["/healthz?probe=1", "/metrics?x=1", "/schema/openapi.json?x=1"])
def test_probes_scrapers_and_the_document_stay_lenient(client, path):
    assert client.get(path).status_code == 200

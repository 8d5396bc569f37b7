"""Schemathesis against the appliance's own OpenAPI document (`/schema/openapi.json`), served by
a real `runlog serve` process on 127.0.0.1: every operation, generated valid and invalid
requests, and every answer checked: no 5xx, status, content type, headers and body as
documented, and auth enforced where the document says it is.

Two checks are left out where the document cannot be exact, each for the operations named below:
`positive_data_acceptance` (a schema-valid request must be accepted) where rules relate parameters
to each other or to the log (proofs: index < tree_size <= entries, from <= to; runs: since <
until; checkpoints: the cursor's form follows `daily`; events: one idempotency key per request,
`final` only on a terminal status), and `negative_data_rejection` (a schema-violating request must
be refused) where the violation may not survive the wire or the rule has no JSON Schema form
(runs' optional text filters: a negated type such as `false` arrives as the text a valid filter
is; event and run attrs: I-JSON accepts 1e300 but not the integer 2^53, which JSON Schema cannot
tell apart, so the document states the narrower, always-valid range).
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from appliance.settings import Settings
from appliance.web.app import create_app

from tests.e2e.server import ADMIN_TOKEN, Server
from tests.fuzz import examples

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RELATIONAL = {("GET", "/v1/proofs/inclusion"), ("GET", "/v1/proofs/consistency"), ("GET", "/v1/runs"),
              ("GET", "/v1/checkpoints"), ("POST", "/v1/events")}
NOT_EXACT = {("GET", "/v1/runs"), ("POST", "/v1/events"), ("POST", "/v1/runs")}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A large failed-auth burst: schemathesis sends bad tokens on purpose, and the limiter has its
    # own tests (tests/web/test_abuse_auth.py); here it must not turn later cases into 429s.
    server = Server(tmp_path_factory.mktemp("fuzz") / "data", RUNLOG_AUTH_FAILURE_BURST="100000").start()
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http:
        started = http.post("/v1/runs", json={"step": "fuzz-seed"}).json()
        trace = started["trace_id"]
        http.post("/v1/events", json=[{"trace_id": trace, "step": "work", "status": "info", "attrs": {"n": 1}},
                                     {"trace_id": trace, "step": "done", "status": "succeeded", "final": True}])
        http.post("/v1/checkpoints")
    server.trace_id = trace
    yield server
    server.kill()


@pytest.fixture(scope="module")
def api_schema(server):
    loaded = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
    # Unknown query parameters and headers are ignored, as HTTP servers do; they are not invalid input.
    loaded.config.generation.update(allow_extra_parameters=False)
    return loaded


def _documented_cases() -> list[tuple[str, str, GenerationMode]]:
    """(METHOD, path, mode) for every operation in the document, read off an app that is built,
    not run; invalid requests (the negative mode) only where there is an input to spoil."""
    paths = create_app(Settings()).openapi_schema.paths or {}
    cases = []
    for path, item in paths.items():
        for method in ("get", "post", "put", "patch", "delete"):
            if (operation := getattr(item, method)) is not None:
                cases.append((method.upper(), path, GenerationMode.POSITIVE))
                if operation.parameters or operation.request_body:
                    cases.append((method.upper(), path, GenerationMode.NEGATIVE))
    return sorted(cases)


# schemathesis' own pytest integration (`from_fixture`) does not work with pytest 9, so each
# operation is a test case here and hypothesis drives schemathesis' strategies directly.
@pytest.mark.parametrize("method, path, mode", [
    pytest.param(*case, id=f"{case[0]} {case[1]} {case[2].value}")
    for case in _documented_cases()])
def test_every_operation_answers_as_documented(server, api_schema, method, path, mode):
    operation = api_schema[path][method]
    excluded = ([positive_data_acceptance] if (method, path) in RELATIONAL else []) + (
        [negative_data_rejection] if (method, path) in NOT_EXACT else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples(12), suppress_health_check=list(HealthCheck), database=None)
    def answers_as_documented(case):
        case.call_and_validate(base_url=server.url, headers=AUTH, excluded_checks=excluded, timeout=30)

    answers_as_documented()


def test_success_answers_of_a_real_run_match_the_document(server, api_schema):
    """Random trace IDs mostly find nothing; these requests name the seeded run, so the 2xx
    bodies of every read route are checked against the document too."""
    trace = server.trace_id
    requests = [("GET", "/v1/runs", "/v1/runs", {}), ("GET", "/v1/runs/{trace_id}", f"/v1/runs/{trace}", {}),
                ("GET", "/v1/entries/{seq}", "/v1/entries/1", {}),
                ("GET", "/v1/proofs/inclusion", "/v1/proofs/inclusion", {"index": 0, "tree_size": 3}),
                ("GET", "/v1/proofs/consistency", "/v1/proofs/consistency", {"from": 1, "to": 3}),
                ("GET", "/v1/checkpoints", "/v1/checkpoints", {"daily": "false"}),
                ("GET", "/v1/checkpoints/latest", "/v1/checkpoints/latest", {}),
                ("GET", "/v1/runs/{trace_id}/export", f"/v1/runs/{trace}/export", {"format": "json"}),
                ("GET", "/v1/runs/{trace_id}/export", f"/v1/runs/{trace}/export", {"format": "csv"}),
                ("POST", "/v1/runs/{trace_id}/links", f"/v1/runs/{trace}/links", {}),
                ("GET", "/v1/keys", "/v1/keys", {}), ("GET", "/healthz", "/healthz", {}),
                ("GET", "/metrics", "/metrics", {})]
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        for method, template, path, params in requests:
            body = {"format": "csv"} if method == "POST" else None
            response = http.request(method, path, params=params, json=body)
            assert response.status_code < 300, (path, response.text)
            api_schema[template][method].validate_response(response)

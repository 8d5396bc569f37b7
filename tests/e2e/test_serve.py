"""End to end: a real `runlog serve` process, tokens made by the CLI, concurrent producers
through the Python client and `runlog emit`, and everything read back and verified with the core."""

import base64
import threading
import uuid

import httpx
import pytest

from appliance.client import RunlogClient
from appliance.core.chain import RunChains, verify_global_chain
from appliance.core.hashing import leaf_hash
from appliance.core.keys import NoteVerifier
from appliance.core.proof_verify import verify_consistency, verify_inclusion
from appliance.core.receipt import open_receipt
from tests.e2e.server import ADMIN_TOKEN, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("e2e") / "data").start()
    yield server
    server.kill()


def make_token(server: Server, name: str, scopes: str) -> str:
    done = server.runlog("token", "create", name, "--scopes", scopes)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("rl_") and "\n" not in token
    return token


def test_concurrent_producers_then_everything_verifies(server):
    token = make_token(server, "producer", "append,read")
    started: list[str] = []
    errors: list[BaseException] = []

    def producer(n: int) -> None:
        try:
            with RunlogClient(server.url, token) as client:
                for r in range(3):
                    run = client.start_run(f"job-{n}-{r}")
                    ctx = run
                    for step in range(5):
                        ctx = client.record(ctx, f"step-{step}", "succeeded", attrs={"n": n, "step": step})
                    client.record(ctx, "done", "succeeded", final=True)
                    started.append(run.traceparent.split("-")[1])
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    for trace_id in started:
        run = http.get(f"/v1/runs/{trace_id}").json()
        assert (run["run"]["status"], run["run"]["closed"], run["run"]["step_count"]) == ("succeeded", True, 7)
        assert [e["run_seq"] for e in run["events"]] == list(range(7))

    size = http.get("/healthz").json()["tree_size"]
    assert size >= 8 * 3 * 7
    entries = [http.get(f"/v1/entries/{seq}").json() for seq in range(size)]
    data = [e["canonical"].encode() for e in entries]
    runs = RunChains()
    assert verify_global_chain([(d, bytes.fromhex(e["entry_hash"])) for d, e in zip(data, entries)], runs=runs).size == size
    assert sum(1 for state in runs.states() if state.closed) >= 24

    proof = http.get("/v1/proofs/inclusion", params={"index": 17, "tree_size": size}).json()
    root = base64.b64decode(proof["root"])
    verify_inclusion(17, size, leaf_hash(data[17]), [base64.b64decode(h) for h in proof["hashes"]], root)
    older = http.get("/v1/proofs/inclusion", params={"index": 0, "tree_size": 50}).json()
    consistency = http.get("/v1/proofs/consistency", params={"from": 50, "to": size}).json()
    verify_consistency(50, size, [base64.b64decode(h) for h in consistency["hashes"]],
                       base64.b64decode(older["root"]), root)


def test_the_client_starts_a_run_at_the_producers_time(server):
    token = make_token(server, "timed", "append,read")
    with RunlogClient(server.url, token) as client:
        run = client.start_run("timed", attrs={"k": 1}, ts="2026-11-28T23:59:59.5+01:00")
        shown = client.get_run(run.traceparent.split("-")[1])
    assert shown["events"][0]["ts"] == "2026-11-28T22:59:59.5Z" and shown["events"][0]["attrs"] == {"k": 1}


def test_receipts_verify_with_the_published_key(server):
    token = make_token(server, "receipts", "append")
    keys = httpx.get(f"{server.url}/v1/keys").json()
    with RunlogClient(server.url, token) as client:
        run = client.start_run("receipt-check")
    receipt = open_receipt(run.receipt["receipt"]["receipt"], NoteVerifier.from_text(keys["log_key"]),
                           origin=keys["origin"])
    receipt.check_covers(run.receipt["receipt"]["first_seq"],
                         [bytes.fromhex(h) for h in run.receipt["receipt"]["entry_hashes"]])


def test_runlog_emit_passes_the_traceparent_along(server):
    token = make_token(server, "shell", "append,read")
    first = server.runlog("emit", "backup", RUNLOG_URL=server.url, RUNLOG_TOKEN=token)
    assert first.returncode == 0, first.stderr
    traceparent = first.stdout.strip()
    second = server.runlog("emit", "upload", "--status", "succeeded", "--attr", "bytes=42", "--final",
                           RUNLOG_URL=server.url, RUNLOG_TOKEN=token, TRACEPARENT=traceparent)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split("-")[1] == traceparent.split("-")[1]
    shown = server.runlog("runs", "show", traceparent.split("-")[1])
    assert "succeeded, 2 steps" in shown.stdout and 'upload {"bytes": "42"}' in shown.stdout
    refused = server.runlog("emit", "late", RUNLOG_URL=server.url, RUNLOG_TOKEN=token, TRACEPARENT=traceparent)
    assert refused.returncode == 1 and "closed" in refused.stderr


def test_runlog_emit_types_json_attrs(server):
    token = make_token(server, "typed", "append,read")
    first = server.runlog("emit", "dump", "--attr", "host=db-1", "--json-attr", "rows=120", "--json-attr",
                          'meta={"ok": true, "parts": [1, 2.5, null]}', RUNLOG_URL=server.url, RUNLOG_TOKEN=token)
    assert first.returncode == 0, first.stderr
    trace_id = first.stdout.split("-")[1]
    run = httpx.get(f"{server.url}/v1/runs/{trace_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert run["events"][0]["attrs"] == {"host": "db-1", "rows": 120, "meta": {"ok": True, "parts": [1, 2.5, None]}}


ZERO_TRACE = "00-" + "0" * 32 + "-b7ad6b7169203331-01"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--json-attr", "rows=12O"], {}, "--json-attr rows: '12O' is not JSON"),
    (["--json-attr", "rows"], {}, "--json-attr takes KEY=JSON"),
    (["--attr", "=x"], {}, "--attr takes KEY=VALUE"),
    (["--attr", "rows=1", "--json-attr", "rows=1"], {}, "attribute 'rows' is given twice"),
    ([], {"TRACEPARENT": "00-abc"}, "TRACEPARENT: traceparent"),
    ([], {"TRACEPARENT": ZERO_TRACE}, "TRACEPARENT: "),
])
def test_runlog_emit_refuses_bad_attrs_and_traceparents_before_sending(server, args, env, message):
    token = make_token(server, f"bad-input-{uuid.uuid4().hex[:8]}", "append,read")
    before = httpx.get(f"{server.url}/healthz").json()["tree_size"]
    refused = server.runlog("emit", "dump", *args, RUNLOG_URL=server.url, RUNLOG_TOKEN=token, **env)
    assert refused.returncode == 2 and message in refused.stderr and refused.stdout == ""
    assert httpx.get(f"{server.url}/healthz").json()["tree_size"] == before


def test_runlog_emit_without_traceparent_records_a_one_step_runs_outcome(server):
    # Without TRACEPARENT emit starts a run; an outcome given with it is its next step, not dropped.
    token = make_token(server, "one-shot", "append,read")
    done = server.runlog("emit", "nightly", "--status", "succeeded", "--final", "--json-attr", "rows=3",
                         RUNLOG_URL=server.url, RUNLOG_TOKEN=token)
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.split("-")[1]
    run = httpx.get(f"{server.url}/v1/runs/{trace_id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert (run["run"]["status"], run["run"]["closed"], run["run"]["step_count"]) == ("succeeded", True, 2)
    assert [(e["status"], e["step"], e["attrs"]) for e in run["events"]] == [
        ("started", "nightly", {"rows": 3}), ("succeeded", "nightly", {})]


def test_revoked_tokens_stop_working_and_scopes_are_enforced(server):
    token = make_token(server, "short-lived", "read")
    http = httpx.Client(base_url=server.url)
    assert http.get("/v1/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert http.post("/v1/events", json={}, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert server.runlog("token", "revoke", "short-lived").returncode == 0
    import time
    time.sleep(1.1)
    assert http.get("/v1/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    listed = server.runlog("token", "list").stdout
    assert "short-lived" in listed and "revoked" in listed and token not in listed


def test_sigterm_drains_and_exits_cleanly(tmp_path):
    server = Server(tmp_path / "data").start()
    with RunlogClient(server.url, ADMIN_TOKEN) as client:
        client.start_run("before-shutdown")
    assert server.terminate() == 0
    restarted = Server(tmp_path / "data").start()
    try:
        assert httpx.get(f"{restarted.url}/healthz").json()["tree_size"] == 1
    finally:
        restarted.kill()


def test_serve_refuses_a_store_whose_chain_was_edited(tmp_path):
    import sqlite3

    server = Server(tmp_path / "data").start()
    with RunlogClient(server.url, ADMIN_TOKEN) as client:
        for i in range(5):
            client.start_run(f"job-{i}")
    assert server.terminate() == 0
    conn = sqlite3.connect(tmp_path / "data" / "runlog.sqlite")
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET data = CAST(replace(CAST(data AS TEXT), 'job-2', 'job-X') AS BLOB) WHERE seq = 2")
    conn.commit()
    conn.close()
    refused = Server(tmp_path / "data")
    with pytest.raises(RuntimeError, match="seq 2") as caught:
        refused.start(timeout=20)
    assert "edited" in str(caught.value)

"""Interoperability: Go's golang.org/x/mod/sumdb/note and sumdb/tlog, unchanged, verify the
checkpoints, proofs and receipts (a signed batch note and an RFC 9162 path) this core produces
(DESIGN.md: third-party verifiers must accept them).

Needs Go and the x/mod source (Debian: golang-go, golang-golang-x-mod-dev); .ci/run installs them.
Skipped only outside CI when they are missing.
"""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.core.checkpoint import Checkpoint, sign_checkpoint
from appliance.core.cosignature import generate_cosigner
from appliance.core.keys import generate_signer
from appliance.core.note import sign_note
from appliance.core.proof_plan import consistency_proof, inclusion_proof
from appliance.core.receipt import Receipt, sign_receipts
from appliance.core.sequencer import Event, Sequencer
from appliance.core.tree import root_from_leaf_hashes

HARNESS = Path(__file__).parent / "go"
X_MOD = Path("/usr/share/gocode/src/golang.org/x/mod/sumdb")
ORIGIN = "runlog.example/interop"


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory) -> Path:
    if shutil.which("go") is None or not X_MOD.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("Go and golang.org/x/mod are required under CI (.ci/run installs them)")
        pytest.skip("Go or golang.org/x/mod source not installed (apt-get install golang-go golang-golang-x-mod-dev)")
    binary = tmp_path_factory.mktemp("go") / "verify"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local",
           "GOCACHE": str(tmp_path_factory.getbasetemp() / "gocache")}
    build_dir = tmp_path_factory.mktemp("gosrc")
    for name in ("go.mod", "main.go"):
        shutil.copy(HARNESS / name, build_dir / name)
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=build_dir, env=env, check=True, timeout=300)
    return binary


def run_go(binary: Path, case: dict) -> dict:
    done = subprocess.run([str(binary)], input=json.dumps(case), capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def log():
    sequencer = Sequencer(lambda trace_id: None)
    events = [
        Event(trace_id=f"{i % 7 + 1:032x}", step=f"step {i}", status="info", ts="2026-11-28T00:00:00Z", source="ci")
        for i in range(300)
    ]
    appended = []
    for i in range(0, len(events), 37):  # several batches; the lookup says every run is new
        items, _ = sequencer.extend(events[i : i + 37], "2026-11-28T00:00:01.000000Z")
        appended += items
    return [a.leaf_hash for a in appended]


def node_reader(leaves):
    return lambda node: root_from_leaf_hashes(leaves[node.begin : node.end])


def test_go_note_open_accepts_our_signed_checkpoint(go_verifier, log):
    signer = generate_signer(ORIGIN)
    cosigner = generate_cosigner("runlog.example/clock")
    checkpoint = Checkpoint(ORIGIN, len(log), root_from_leaf_hashes(log))
    note = sign_checkpoint(checkpoint, signer, [cosigner], timestamp=1_795_000_000).decode()
    result = run_go(go_verifier, {"verifier_key": signer.verifier().to_text(), "checkpoint": note})
    assert result["checkpoint_ok"], result
    assert (result["origin"], result["size"], result["root"]) == (ORIGIN, len(log), b64(checkpoint.root_hash))

    tampered = note.replace(f"\n{len(log)}\n", f"\n{len(log) - 1}\n")
    assert not run_go(go_verifier, {"verifier_key": signer.verifier().to_text(), "checkpoint": tampered})["checkpoint_ok"]
    stranger = generate_signer(ORIGIN).verifier().to_text()
    assert not run_go(go_verifier, {"verifier_key": stranger, "checkpoint": note})["checkpoint_ok"]


def test_go_tlog_accepts_our_inclusion_and_consistency_proofs(go_verifier, log):
    read = node_reader(log)
    inclusion, consistency = [], []
    for size in (1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300):
        root = root_from_leaf_hashes(log[:size])
        for index in sorted({0, size // 2, size - 1}):
            proof = inclusion_proof(index, size, read)
            inclusion.append({"index": index, "size": size, "leaf_hash": b64(log[index]),
                              "proof": [b64(h) for h in proof], "root": b64(root)})
        for old in sorted({1, size // 3 or 1, size - 1 or 1, size}):
            proof = consistency_proof(old, size, read)
            consistency.append({"old": old, "new": size, "proof": [b64(h) for h in proof],
                                "old_root": b64(root_from_leaf_hashes(log[:old])), "new_root": b64(root)})
    result = run_go(go_verifier, {"inclusion": inclusion, "consistency": consistency})
    assert result["inclusion"] == ["ok"] * len(inclusion)
    assert result["consistency"] == ["ok"] * len(consistency)


def test_go_tlog_rejects_tampered_proofs(go_verifier, log):
    read = node_reader(log)
    proof = inclusion_proof(5, 300, read)
    flipped = [proof[0][:-1] + bytes([proof[0][-1] ^ 1])] + proof[1:]
    cproof = consistency_proof(100, 300, read)
    result = run_go(go_verifier, {
        "inclusion": [{"index": 5, "size": 300, "leaf_hash": b64(log[5]), "proof": [b64(h) for h in flipped],
                       "root": b64(root_from_leaf_hashes(log))},
                      {"index": 6, "size": 300, "leaf_hash": b64(log[5]), "proof": [b64(h) for h in proof],
                       "root": b64(root_from_leaf_hashes(log))}],
        "consistency": [{"old": 100, "new": 300, "proof": [b64(h) for h in cproof[:-1]],
                         "old_root": b64(root_from_leaf_hashes(log[:100])), "new_root": b64(root_from_leaf_hashes(log))}],
    })
    assert all(verdict != "ok" for verdict in result["inclusion"] + result["consistency"]), result


def test_go_note_open_accepts_a_rotation_handover_with_either_log_key(go_verifier, log):
    """The first checkpoint after a key rotation carries the old and the new log key's signatures
    (appliance.store.checkpoints): a Go verifier that knows either key accepts it unchanged."""
    old, new = generate_signer(ORIGIN), generate_signer(ORIGIN)
    clock = generate_cosigner("runlog.example/clock")
    body = Checkpoint(ORIGIN, len(log), root_from_leaf_hashes(log)).to_text()
    note = sign_note(body, [new, old, clock.at(1_795_000_000)]).decode()
    for key in (old, new):
        result = run_go(go_verifier, {"verifier_key": key.verifier().to_text(), "checkpoint": note})
        assert result["checkpoint_ok"] and result["size"] == len(log), result
    stranger = generate_signer(ORIGIN).verifier().to_text()
    assert not run_go(go_verifier, {"verifier_key": stranger, "checkpoint": note})["checkpoint_ok"]


def test_go_note_and_tlog_accept_our_receipts(go_verifier, log):
    """A version 2 receipt is a signed note and an RFC 9162 record proof: Go's note.Open and
    tlog.CheckRecord, with tlog.RecordHash of the statement, accept every receipt of batches of
    1 to 13 requests, and refuse edited ones."""
    signer = generate_signer(ORIGIN)
    at = "2026-11-28T00:00:01.000000Z"
    receipts = []
    for size in (1, 2, 3, 5, 8, 13):
        batch = [Receipt.for_entries(ORIGIN, 10 * i, at, log[10 * i:10 * i + i + 1]) for i in range(size)]
        receipts += sign_receipts(batch, signer)
    key = signer.verifier().to_text()
    assert run_go(go_verifier, {"verifier_key": key, "receipts": receipts})["receipts"] == ["ok"] * len(receipts)
    edited = [receipts[-1].replace("\n120\n", "\n121\n", 1), receipts[-1].replace("index 12\n", "index 11\n"),
              receipts[-2].replace("\n13\n", "\n14\n")]
    assert all(a != b for a, b in zip(edited, receipts[-1:] * 2 + receipts[-2:-1]))
    verdicts = run_go(go_verifier, {"verifier_key": key, "receipts": edited})["receipts"]
    assert "ok" not in verdicts, verdicts
    stranger = generate_signer(ORIGIN).verifier().to_text()
    assert run_go(go_verifier, {"verifier_key": stranger, "receipts": receipts[:1]})["receipts"] != ["ok"]

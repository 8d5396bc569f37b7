"""Evidence bundles built from plain values (the test-vector log, a reference tree) and verified
with appliance.core alone; the tlog-proof text format; tlog-policy files; CSV exports."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.bundle import (DailyRootProof, ExportedEntry, SignedBundle, bundle_bytes, bundle_digest,
                                   canonical_json, sign_bundle, signature_text)
from appliance.core.bundle_verify import BundleError, verify_bundle
from appliance.core.checkpoint import Checkpoint, sign_checkpoint
from appliance.core.cosignature import generate_cosigner
from appliance.core.errors import InvalidInput
from appliance.core.csv_export import CsvError, build_csv, neutralise, sign_csv, verify_csv
from appliance.core.hashing import leaf_hash
from appliance.core.keys import generate_signer
from appliance.core.policy import Policy, PolicyError
from appliance.core.proof_plan import consistency_proof, inclusion_proof
from appliance.core.tlog_proof import TlogProof, TlogProofError
from appliance.core.tree import root_from_leaf_hashes

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOG = (VECTORS / "chain" / "good-log.ndjson").read_bytes().splitlines()
ORIGIN = "runlog.example/log"
SIGNER = generate_signer(ORIGIN, hashlib.sha256(b"runlog test vector: log key").digest())
CLOCK = generate_cosigner(f"{ORIGIN}/clock", hashlib.sha256(b"runlog test vector: cosigner key").digest())
RUN = "00000000000000000000000000000001"  # seqs 0, 2, 4, 5 (closed) in the vector log


def _node(size: int):
    leaves = [leaf_hash(data) for data in LOG[:size]]
    return lambda node: root_from_leaf_hashes(leaves[node.begin:node.end])


def signed_note(size: int, timestamp: int = 1772355600) -> str:
    root = root_from_leaf_hashes([leaf_hash(data) for data in LOG[:size]])
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), SIGNER, [CLOCK], timestamp=timestamp).decode()


def make_bundle(size: int = len(LOG), daily_size: int = 3) -> dict:
    return make_signed_bundle(size, daily_size).bundle


def make_signed_bundle(size: int = len(LOG), daily_size: int = 3) -> SignedBundle:
    """The bundle of run RUN against the vector log's tree of `size`, with one daily root."""
    note = signed_note(size)
    entries = [ExportedEntry(seq, data, tuple(inclusion_proof(seq, size, _node(size))))
               for seq, data in enumerate(LOG[:size]) if json.loads(data)["trace_id"] == RUN]
    daily = [DailyRootProof("2026-03-01", daily_size, signed_note(daily_size),
                            tuple(consistency_proof(daily_size, size, _node(size))))]
    return sign_bundle(trace_id=RUN, checkpoint=note, entries=entries, signer=SIGNER,
                       clock_key=CLOCK.verifier().to_text(), daily_roots=daily, exported_at="2026-03-02T00:00:00Z")


BUNDLE_BYTES = make_signed_bundle().data


def test_round_trip_reports_what_is_proven():
    report = verify_bundle(BUNDLE_BYTES, key=SIGNER.verifier())
    assert (report.count, report.seqs, report.closed, report.tree_size) == (4, (0, 5), True, 12)
    assert report.signed_at == 1772355600 and report.daily_roots == (("2026-03-01", 3),)
    assert report.to_json()["run"] == "closed"


def test_bundle_file_is_rfc8785_and_any_spelling_verifies():
    again = json.dumps(json.loads(BUNDLE_BYTES), indent=1).encode()
    assert verify_bundle(again, key=SIGNER.verifier()).count == 4


def test_each_entry_carries_a_tlog_proof_against_the_checkpoint():
    bundle = json.loads(BUNDLE_BYTES)
    for item in bundle["entries"]:
        proof = TlogProof.from_text(item["proof"])
        assert proof.checkpoint == bundle["checkpoint"]
        assert TlogProof.from_text(proof.to_text()) == proof
        assert item["proof"].startswith("c2sp.org/tlog-proof@v1\nindex ")


def test_open_run_prefix():
    report = verify_bundle(bundle_bytes(make_bundle(size=5)), key=SIGNER.verifier())
    assert (report.count, report.closed) == (3, False)


def test_daily_root_of_another_log_refused():
    bundle = make_bundle()
    rogue = generate_signer(ORIGIN, bytes(32))
    body = bundle["daily_roots"][0]["checkpoint"].split("\n\n")[0] + "\n"
    bundle["daily_roots"][0]["checkpoint"] = sign_checkpoint(Checkpoint.from_text(body), rogue).decode()
    with pytest.raises(BundleError, match=r"daily_roots\[0\]"):
        verify_bundle(json.dumps(bundle), key=SIGNER.verifier())


def test_key_or_policy_required():
    with pytest.raises(InvalidInput, match="exactly one"):
        verify_bundle(BUNDLE_BYTES)


@pytest.mark.parametrize("text", ["", "c2sp.org/tlog-proof@v1\n", "c2sp.org/tlog-proof@v2\nindex 1\n\nx",
                                  "c2sp.org/tlog-proof@v1\nindex 01\n\nx", "c2sp.org/tlog-proof@v1\nindex 1\nAAA=\n\nx",
                                  "c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\nx"])
def test_tlog_proof_garbage(text):
    with pytest.raises(TlogProofError):
        TlogProof.from_text(text)


def test_tlog_proof_extra_round_trips():
    proof = TlogProof(7, (bytes(32),), "note\n\n— k AAAA\n", extra=b"hello")
    assert TlogProof.from_text(proof.to_text()) == proof


def test_policy_quorum_rules():
    w1, w2 = (generate_cosigner(f"w{n}.example", bytes([n]) * 32).verifier().to_text() for n in (1, 2))
    policy = Policy.from_text(f"# comment\nlog {SIGNER.verifier().to_text()} https://log.example\n"
                              f"witness a {w1}\nwitness b {w2}\ngroup g 1 a b\nquorum g\n")
    assert policy.satisfied({"a"}) and not policy.satisfied(set())
    assert Policy.from_text(f"log {SIGNER.verifier().to_text()}\nquorum none\n").satisfied(set())
    for bad in ("", "quorum none\n", f"log {SIGNER.verifier().to_text()}\n", "frob x\n",
                f"log {SIGNER.verifier().to_text()}\nwitness a {w1}\nwitness a {w2}\nquorum a\n",
                f"log {SIGNER.verifier().to_text()}\ngroup g 3 a\nquorum g\n"):
        with pytest.raises(PolicyError):
            Policy.from_text(bad)


def test_csv_neutralises_formula_starts():
    for cell in ("=SUM(A1)", "+1", "-2", "@x", "\tx", "\rx"):
        assert neutralise(cell) == "'" + cell
    assert neutralise("plain") == "plain" and neutralise("1.5") == "1.5"


def test_csv_signed_and_tampers_caught():
    run = [data for data in LOG if json.loads(data)["trace_id"] == RUN]
    data = build_csv(run)
    cp = Checkpoint.from_text(signed_note(12).split("\n\n")[0] + "\n")
    note = sign_csv(data, trace_id=RUN, rows=len(run), checkpoint=cp, signer=SIGNER)
    assert verify_csv(data, note, SIGNER.verifier())["rows"] == 4
    with pytest.raises(CsvError, match="edited"):
        verify_csv(data.replace(b"step 1", b"step 7"), note, SIGNER.verifier())
    with pytest.raises(CsvError, match="edited"):
        verify_csv(b"\r\n".join(data.split(b"\r\n")[:-2]) + b"\r\n", note, SIGNER.verifier())
    with pytest.raises(CsvError, match="signature"):
        verify_csv(data, note, generate_signer(ORIGIN, bytes(32)).verifier())


def test_bundle_file_is_byte_identical_to_rfc8785():
    assert BUNDLE_BYTES == rfc8785.dumps(json.loads(BUNDLE_BYTES))


def test_the_file_encoded_member_by_member_is_the_bundle_encoded_whole():
    signed = make_signed_bundle(size=5)
    assert signed.data == bundle_bytes(signed.bundle) == rfc8785.dumps(signed.bundle)


_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # controls, quotes, astral: all


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_ANY_TEXT, st.integers(0, 2**63), st.lists(st.binary(min_size=32, max_size=32), max_size=4)),
                min_size=1, max_size=4), _ANY_TEXT)
def test_the_file_is_rfc8785_of_the_entries_and_their_tlog_proofs(items, note):
    """The entries member is put together from JSON strings (the checkpoint escaped once): still the
    RFC 8785 form of entry texts and tlog-proofs, and the file signature covers exactly that."""
    entries = [ExportedEntry(seq, text.encode("utf-8"), tuple(hashes)) for text, seq, hashes in items]
    signed = sign_bundle(trace_id=RUN, checkpoint=note, entries=entries, signer=SIGNER, clock_key=None,
                         exported_at="2026-03-02T00:00:00Z")
    parsed = json.loads(signed.data)
    assert parsed["entries"] == [{"entry": text, "proof": TlogProof(seq, tuple(hashes), note).to_text()}
                                 for text, seq, hashes in items]
    assert signed.data == rfc8785.dumps(parsed)
    assert parsed["signature"].startswith(signature_text(ORIGIN, RUN, bundle_digest(parsed)) + "\n")


def test_a_malformed_proof_hash_is_named_by_its_position():
    hashes = (bytes(32), bytes([7]) * 32, bytes(32))
    text = TlogProof(3, hashes, "note\n").to_text()
    second = base64.b64encode(hashes[1]).decode()
    for bad in ("!" * 43 + "=", second[:-2] + "B=", second[:-1], second + "="):  # alphabet, canonical, length
        with pytest.raises(TlogProofError, match="proof hash 1 is not"):
            TlogProof.from_text(text.replace(second, bad))


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False, allow_infinity=False),
              st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=300)
@given(_JSON)
def test_canonical_json_fast_path_equals_rfc8785(value):
    try:
        expected = rfc8785.dumps(value)
    except Exception:  # noqa: BLE001 - whatever rfc8785 refuses, we refuse in the family
        with pytest.raises(InvalidInput):
            canonical_json(value)
        return
    assert canonical_json(value) == expected

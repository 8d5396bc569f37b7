"""Export a run from a real store (real Writer, real checkpoints) and verify the bundle offline;
every tamper named after the attack is caught with its own message."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from appliance.core.bundle_verify import BundleError, verify_bundle
from appliance.core.errors import InvalidInput, RunlogError
from appliance.core.keys import NoteVerifier, generate_signer
from appliance.core.note import sign_note
from appliance.core.policy import Policy
from appliance.store.export import ExportError, RunNotFound
from tests.export_helpers import Store, dump, trace

RUN, OTHER = trace(1), trace(2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("export"))
    s.run(RUN, 5, closed=True, batch=2, noise=3)
    s.advance(hours=3)  # past midnight: the first day gets a daily root
    s.run(OTHER, 4, closed=False, batch=3, noise=2)
    s.checkpoint()
    yield s
    s.close()


@pytest.fixture(scope="module")
def key(store) -> NoteVerifier:
    return NoteVerifier.from_text(store.log_key)


@pytest.fixture
def bundle(store) -> dict:
    return store.bundle(RUN)


def fails(bundle: dict, key: NoteVerifier, *words: str, error=BundleError) -> str:
    with pytest.raises(error) as caught:
        verify_bundle(dump(bundle), key=key)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


def entry(bundle: dict, index: int) -> dict:
    return json.loads(bundle["entries"][index]["entry"])


def test_closed_and_open_runs_round_trip(store, key):
    closed = verify_bundle(dump(store.bundle(RUN)), key=key)
    assert (closed.count, closed.closed, closed.trace_id) == (5, True, RUN)
    assert closed.signed_at is not None and closed.daily_roots  # the first day's root covers the run
    opened = verify_bundle(dump(store.bundle(OTHER)), key=key)
    assert (opened.count, opened.closed) == (4, False)
    assert any("open" in item for item in opened.not_proven)


def test_a_daily_root_can_be_the_target(store, key):
    (day,) = {d for d, _ in verify_bundle(dump(store.bundle(RUN)), key=key).daily_roots}
    from datetime import date

    report = verify_bundle(dump(store.bundle(RUN, day=date.fromisoformat(day))), key=key)
    assert report.tree_size == report.daily_roots[0][1]
    with pytest.raises(ExportError, match="no entry of run"):
        store.bundle(OTHER, day=date.fromisoformat(day))  # that run began after the day ended


def test_unknown_run_is_not_found(store):
    with pytest.raises(RunNotFound):
        store.bundle(trace(99))


@pytest.mark.parametrize("steps,closed", [(1, True), (2, False), (1000, True), (10_000, False)])
def test_round_trip_sizes(tmp_path, steps, closed):
    s = Store(tmp_path)
    try:
        s.run(trace(7), steps, closed=closed, batch=2500, noise=1)
        s.checkpoint()
        report = verify_bundle(dump(s.bundle(trace(7))), key=NoteVerifier.from_text(s.log_key))
    finally:
        s.close()
    assert (report.count, report.closed) == (steps, closed)


# -- tampers, named after the attack ----------------------------------------------------------------

def test_entry_byte_flipped(bundle, key):
    for index in range(len(bundle["entries"])):
        forged = copy.deepcopy(bundle)
        text = forged["entries"][index]["entry"]
        forged["entries"][index]["entry"] = text.replace("step ", "stap ", 1)
        fails(forged, key, f"entries[{index}]", "not in the signed tree")


def test_entry_byte_flipped_breaks_canonical_form(bundle, key):
    forged = copy.deepcopy(bundle)
    forged["entries"][2]["entry"] = forged["entries"][2]["entry"].replace(":", ": ", 1)
    fails(forged, key, "entries[2]", "altered or are not a valid entry")


def test_entry_removed_from_middle(bundle, key):
    del bundle["entries"][2]
    fails(bundle, key, "chain is broken (missing)")


def test_last_entry_removed_is_an_open_run_and_the_file_signature_fails(bundle, key):
    del bundle["entries"][-1]
    fails(bundle, key, "file signature", "edited")


def test_entry_duplicated(bundle, key):
    bundle["entries"].insert(3, bundle["entries"][2])
    fails(bundle, key, "chain is broken (inserted)")


def test_entry_of_another_run_inserted(store, bundle, key):
    other = store.bundle(OTHER)["entries"][0]
    bundle["entries"].insert(2, other)
    fails(bundle, key, "another run was inserted")


def test_entries_reordered(bundle, key):
    bundle["entries"][1], bundle["entries"][2] = bundle["entries"][2], bundle["entries"][1]
    fails(bundle, key, "chain is broken")


def test_proof_hash_changed(bundle, key):
    text = bundle["entries"][1]["proof"]
    lines = text.split("\n")
    raw = bytearray(base64.b64decode(lines[2]))
    raw[0] ^= 1
    lines[2] = base64.b64encode(bytes(raw)).decode()
    bundle["entries"][1]["proof"] = "\n".join(lines)
    fails(bundle, key, "entries[1]", "not in the signed tree", "expected root")


def test_proof_truncated(bundle, key):
    lines = bundle["entries"][0]["proof"].split("\n")
    del lines[2]
    bundle["entries"][0]["proof"] = "\n".join(lines)
    fails(bundle, key, "entries[0]", "must have")


def test_checkpoint_edited(bundle, key):
    note = bundle["checkpoint"]
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) + 1)
    bundle["checkpoint"] = "\n".join(lines)
    fails(bundle, key, "checkpoint", "invalid signature")


def test_checkpoint_resigned_by_unknown_key(store, bundle, key):
    body = bundle["checkpoint"].split("\n\n")[0] + "\n"
    rogue = generate_signer(store.signers.log.name, bytes(32))
    forged_note = sign_note(body, [rogue]).decode()
    bundle["checkpoint"] = forged_note
    for item in bundle["entries"]:
        item["proof"] = item["proof"].split("\n\n")[0] + "\n\n" + forged_note
    fails(bundle, key, "checkpoint", "no verifiable signatures")


def test_daily_root_consistency_proof_changed(bundle, key):
    proof = bundle["daily_roots"][0]["consistency"]
    proof[0] = base64.b64encode(bytes(32)).decode()
    fails(bundle, key, "daily_roots[0]", "does not extend")


def test_file_signature_removed(bundle, key):
    del bundle["signature"]
    fails(bundle, key, "file signature is missing")


def test_anchor_location_edited(bundle, key):
    bundle["anchors"].append({"anchor": "s3", "size": 1, "location": "s3://elsewhere"})
    fails(bundle, key, "file signature", "edited")


def test_clock_key_swapped(store, bundle, key):
    from appliance.core.cosignature import generate_cosigner

    bundle["keys"]["clock"] = generate_cosigner(store.signers.clock.name).verifier().to_text()
    fails(bundle, key, "file signature")  # the swapped key is what the log key signed over


def test_wrong_key_refuses(bundle):
    other = generate_signer("runlog.test/export", bytes(range(32))).verifier()
    fails(bundle, other, "checkpoint", "not signed by the log key")


# -- garbage ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"{", b"[]", b"\xff\xfe", b'{"format": "runlog-evidence/v1"}',
                                  b'{"format": "x"}', b"null", b'{"format":"runlog-evidence/v1","trace_id":1}'])
def test_garbage_is_a_clean_error(data, key):
    with pytest.raises(InvalidInput):
        verify_bundle(data, key=key)


def test_every_truncation_is_a_clean_error(store, key):
    data = dump(store.bundle(RUN))
    for cut in range(0, len(data), max(1, len(data) // 300)):
        with pytest.raises(RunlogError):
            verify_bundle(data[:cut], key=key)


def test_every_member_removed_or_retyped_is_a_clean_error(bundle, key):
    for name in list(bundle):
        for value in (None, 7, "x", [], {}):
            if bundle[name] == value:
                continue
            forged = dict(bundle)
            forged[name] = value
            with pytest.raises(RunlogError):
                verify_bundle(dump(forged), key=key)
        forged = dict(bundle)
        del forged[name]
        with pytest.raises(RunlogError):
            verify_bundle(dump(forged), key=key)


def test_policy_with_witness_quorum(store, bundle, key):
    clock = store.signers.clock.verifier().to_text()
    ok = Policy.from_text(f"log {store.log_key}\nwitness clock {clock}\nquorum clock\n")
    assert verify_bundle(dump(bundle), policy=ok).witnesses == ("clock",)
    from appliance.core.cosignature import generate_cosigner

    absent = generate_cosigner("witness.example/w1").verifier().to_text()
    strict = Policy.from_text(f"log {store.log_key}\nwitness clock {clock}\nwitness w1 {absent}\n"
                              "group both all clock w1\nquorum both\n")
    with pytest.raises(BundleError, match="quorum"):
        verify_bundle(dump(bundle), policy=strict)


def test_bench_export_quick_runs(tmp_path):
    """bench/export.py in its smoke mode (figures are reported, never asserted)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    figures = tmp_path / "export.json"
    done = subprocess.run([sys.executable, str(root / "bench" / "export.py"), "--quick", "--json", str(figures)],
                          capture_output=True, text=True, timeout=240, cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(figures.read_text())
    assert result["steps"] == 1000 and result["bytes_per_entry"] > 0


def test_anchor_locations_come_from_the_outbox(tmp_path):
    """A local-directory anchor publishes through the real outbox; the bundle names where, and the
    verifier reports it as a claim it did not check."""
    from appliance.anchors.localdir import LocalDirAnchor
    from appliance.anchors.outbox import Outbox

    s = Store(tmp_path / "data")
    try:
        s.run(trace(3), 3, closed=True)
        s.checkpoint()
        anchor = LocalDirAnchor(tmp_path / "anchor", origin=s.settings.origin)
        (result,) = Outbox(s.settings.db_path, [anchor], origin=s.settings.origin).push()
        assert result.published >= 1
        report = verify_bundle(dump(s.bundle(trace(3))), key=NoteVerifier.from_text(s.log_key))
    finally:
        s.close()
    (located,) = report.anchors
    assert located["anchor"] == anchor.name and located["size"] == report.tree_size
    assert str(tmp_path / "anchor") in located["location"]
    assert any("anchors were not consulted" in item for item in report.not_proven)


def test_export_proofs_equal_the_tree_readers(tmp_path):
    """The export's PATH-built proofs are TreeReader's (core planner) proofs, at sizes around tile edges."""
    from appliance.store.export import _Proofs
    from appliance.store.tree_reader import TreeReader

    s = Store(tmp_path)
    try:
        s.run(trace(4), 600, closed=False, batch=600)
        reader = TreeReader(s.conn)
        for size in (1, 2, 3, 255, 256, 257, 511, 512, 513, 600):
            indices = range(size) if size in (257, 600) else {0, 1, size // 2, size - 2, size - 1} & {*range(size)}
            for prefetch in (False, True):
                proofs = _Proofs(s.conn, size)
                if prefetch:
                    proofs.prefetch(sorted(indices))
                for index in indices:
                    assert proofs.inclusion(index) == tuple(reader.inclusion_proof(index, size)), (index, size)
    finally:
        s.close()


def test_tiles_read_ahead_are_checked_like_tiles_read_one_by_one(tmp_path):
    """A tile or level-4 nodes row read ahead that is missing or malformed is read again when used,
    and refused with the message reading it alone gives; an edited one is caught when used."""
    import sqlite3

    from appliance.store.errors import StoreCorrupt
    from appliance.store.export import _Proofs
    from appliance.store.tiles import TileStoreError

    s = Store(tmp_path)
    try:
        s.run(trace(4), 600, closed=False, batch=600)
        conn = sqlite3.connect(s.settings.db_path, isolation_level=None)
        conn.execute("DROP TRIGGER level4_nodes_no_update")
        conn.execute("DROP TRIGGER level4_nodes_no_delete")
        conn.execute("UPDATE level4_nodes SET hashes = substr(hashes, 1, 480) WHERE id = 0")
        (hashes,) = conn.execute("SELECT hashes FROM level4_nodes WHERE id = 1").fetchone()
        conn.execute("UPDATE level4_nodes SET hashes = ? WHERE id = 1", (bytes(32) + hashes[32:],))
        conn.close()
        proofs = _Proofs(s.conn, 600)
        proofs.prefetch([3, 300])
        with pytest.raises(TileStoreError, match="level-4 nodes of tile tile/0/000 are missing or not 512 bytes"):
            proofs.inclusion(3)
        with pytest.raises(StoreCorrupt, match="level-4 nodes of tile tile/0/001 do not hash to its root"):
            proofs.inclusion(300)
    finally:
        s.close()

"""Receipts: one statement per accepted request, a group's statements under one signed batch root."""

import pytest
from hypothesis import given, strategies as st

from appliance.core.checkpoint import open_checkpoint
from appliance.core.errors import NoteFormatError, RunlogError, SignatureError
from appliance.core.hashing import sha256
from appliance.core.keys import generate_signer
from appliance.core.note import sign_note
from appliance.core.proof_plan import inclusion_proof
from appliance.core.receipt import (
    HEADER, Receipt, ReceiptError, ReceiptSigner, batch_tree, open_receipt, sign_receipts,
)
from appliance.core.tree import NodeID, root_from_leaf_hashes

ORIGIN = "runlog.example/log"
SIGNER = generate_signer(ORIGIN, seed=bytes(range(32)))
HASHES = [sha256(bytes([i])) for i in range(3)]
AT = "2026-11-28T08:00:00.000001Z"
TIMES = st.sampled_from([AT, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00.5Z"])
REQUESTS = st.lists(st.tuples(st.integers(0, 10**16 - 1), st.lists(st.binary(min_size=32, max_size=32), min_size=1,
                                                                    max_size=4)), min_size=1, max_size=40)


def _batch(count: int = 5) -> tuple[list[Receipt], list[str]]:
    receipts = [Receipt.for_entries(ORIGIN, 41 + 3 * i, AT, HASHES) for i in range(count)]
    return receipts, sign_receipts(receipts, SIGNER)


def test_every_receipt_of_a_batch_opens_alone_and_covers_exactly_its_request():
    receipts, notes = _batch()
    for receipt, note in zip(receipts, notes):
        opened = open_receipt(note, SIGNER.verifier(), origin=ORIGIN)
        assert opened == receipt
        opened.check_covers(receipt.first_seq, HASHES)
    assert notes[2].startswith(f"{HEADER}\nrunlog.example/log\n47\n3\n{AT}\n")
    assert notes[2].count("\u2014 ") == 1 and notes[2].split("\n\n", 1)[1] == notes[0].split("\n\n", 1)[1]


@pytest.mark.parametrize("first_seq, hashes", [(42, HASHES), (41, HASHES[:2]), (41, HASHES[::-1])])
def test_a_receipt_does_not_cover_other_entries(first_seq, hashes):
    with pytest.raises(ReceiptError):
        Receipt.for_entries(ORIGIN, 41, AT, HASHES).check_covers(first_seq, hashes)


def _swap_path_hash(note: str) -> str:
    lines = note.split("\n")
    lines[7] = lines[7][:-2] + ("A=" if lines[7][-2] != "A" else "Q=")  # still canonical base64
    return "\n".join(lines)


@pytest.mark.parametrize("tamper, error", [
    (lambda n: n.replace("\n47\n", "\n48\n", 1), ReceiptError),  # the statement edited: not in the batch
    (lambda n: n.replace("index 2\n", "index 3\n"), ReceiptError),  # another position
    (_swap_path_hash, ReceiptError),  # a path hash edited
    (lambda n: n.replace("\n5\n", "\n6\n"), SignatureError),  # the batch size edited: the signature fails
    (lambda n: n.replace("index 2\n", "index 02\n"), NoteFormatError),
    (lambda n: n.replace("index 2\n", "index 2\n\n"), SignatureError),  # the path is read as signed text
    (lambda n: n.split("\n\n", 1)[0] + "\n", NoteFormatError),  # no batch note
])
def test_a_tampered_receipt_is_refused(tamper, error):
    _, notes = _batch()
    tampered = tamper(notes[2])
    assert tampered != notes[2]
    with pytest.raises(error):
        open_receipt(tampered, SIGNER.verifier(), origin=ORIGIN)


def test_a_statement_cannot_borrow_another_batchs_note():
    _, notes = _batch()
    other = sign_receipts([Receipt.for_entries(ORIGIN, 900, AT, HASHES)] * 5, SIGNER)[2]
    forged = notes[2].split("\n\n", 1)[0] + "\n\n" + other.split("\n\n", 1)[1]
    with pytest.raises(ReceiptError):
        open_receipt(forged, SIGNER.verifier(), origin=ORIGIN)


def test_receipts_of_another_key_or_origin_are_refused():
    _, notes = _batch()
    with pytest.raises(SignatureError):
        open_receipt(notes[0], generate_signer(ORIGIN).verifier(), origin=ORIGIN)
    with pytest.raises(ReceiptError):
        open_receipt(notes[0], SIGNER.verifier(), origin="runlog.example/other")
    other = generate_signer("runlog.example/other")
    foreign = sign_receipts([Receipt.for_entries("runlog.example/other", 1, AT, HASHES)], other)[0]
    batch_from_ours = foreign.split("\n\n", 1)[0] + "\n\n" + _batch(1)[1][0].split("\n\n", 1)[1]
    with pytest.raises(ReceiptError):  # the statement names another origin than the batch note
        open_receipt(batch_from_ours, SIGNER.verifier(), origin="runlog.example/other")


def test_version_1_receipts_still_open():
    receipt = Receipt.for_entries(ORIGIN, 41, AT, HASHES)
    note = sign_note(receipt.to_text(), [SIGNER]).decode()
    assert note.startswith("runlog-receipt/v1\n")
    assert open_receipt(note, SIGNER.verifier(), origin=ORIGIN) == receipt
    with pytest.raises(SignatureError):
        open_receipt(note.replace("\n41\n", "\n40\n"), SIGNER.verifier(), origin=ORIGIN)


def test_a_receipt_is_never_a_checkpoint():
    for note in _batch(1)[1] + _batch(3)[1]:
        with pytest.raises(RunlogError):
            open_checkpoint(note, SIGNER.verifier(), origin=ORIGIN)


@pytest.mark.parametrize("origin", ["runlog-receipt/v1", "runlog-receipt/v2", "runlog-receipt-batch/v2",
                                    "runlog-receipts.example/log"])
def test_no_origin_starts_like_a_receipt(origin):
    with pytest.raises(NoteFormatError):
        Receipt(origin, 0, 1, AT, bytes(32))
    with pytest.raises(NoteFormatError):
        ReceiptSigner(origin, generate_signer(origin))


@given(st.text(max_size=300))
def test_garbage_never_escapes_the_error_family(text):
    for parse in (Receipt.from_text, lambda t: open_receipt(t, SIGNER.verifier(), origin=ORIGIN),
                  lambda t: open_receipt(f"{HEADER}\n{t}", SIGNER.verifier(), origin=ORIGIN)):
        try:
            parse(text)
        except RunlogError:
            pass


@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_batch_tree_is_rfc_9162(leaves):
    """The root is the RFC 9162 Merkle Tree Hash and each path the RFC's inclusion proof, both by
    the core's independent implementations (tree.root_from_leaf_hashes, proof_plan)."""
    root, paths = batch_tree(list(leaves))

    def node(node_id: NodeID) -> bytes:
        return root_from_leaf_hashes(leaves[node_id.index << node_id.level:(node_id.index + 1) << node_id.level])

    assert root == root_from_leaf_hashes(leaves)
    assert paths == [inclusion_proof(i, len(leaves), node) for i in range(len(leaves))]


@given(REQUESTS, TIMES)
def test_the_writers_batches_are_the_receipts_sign_receipts_makes(requests, received_at):
    receipts = [Receipt.for_entries(ORIGIN, first, received_at, hashes) for first, hashes in requests]
    notes = ReceiptSigner(ORIGIN, SIGNER).sign_batch(received_at, requests)
    assert notes == sign_receipts(receipts, SIGNER)
    for receipt, note, (first, hashes) in zip(receipts, notes, requests):
        opened = open_receipt(note, SIGNER.verifier(), origin=ORIGIN)
        assert opened == receipt
        opened.check_covers(first, hashes)
        assert note.partition("index ")[0] == receipt.statement()


def test_the_writers_signer_refuses_what_receipts_refuse():
    with pytest.raises(NoteFormatError):
        ReceiptSigner("runlog.example/other", SIGNER)
    signer = ReceiptSigner(ORIGIN, SIGNER)
    for first_seq, received_at, hashes in [(-1, AT, HASHES), (1, AT, []), (1, "2026-11-28 08:00:00Z", HASHES),
                                           (True, AT, HASHES), (1, AT, [b"short"])]:
        with pytest.raises(RunlogError):
            signer.sign_batch(received_at, [(first_seq, hashes)])
    with pytest.raises(NoteFormatError):
        sign_receipts([Receipt.for_entries(ORIGIN, 1, AT, HASHES), Receipt.for_entries("a.example/b", 1, AT, HASHES)],
                      SIGNER)

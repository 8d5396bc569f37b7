"""Receipts: one signed note per accepted request, covering its entries by digest."""

import pytest
from hypothesis import given, strategies as st

from appliance.core.checkpoint import open_checkpoint
from appliance.core.errors import NoteFormatError, RunlogError, SignatureError
from appliance.core.hashing import sha256
from appliance.core.keys import generate_signer
from appliance.core.receipt import Receipt, ReceiptError, ReceiptSigner, open_receipt, sign_receipt

ORIGIN = "runlog.example/log"
SIGNER = generate_signer(ORIGIN, seed=bytes(range(32)))
HASHES = [sha256(bytes([i])) for i in range(3)]
AT = "2026-11-28T08:00:00.000001Z"


def test_round_trip_and_coverage():
    receipt = Receipt.for_entries(ORIGIN, 41, AT, HASHES)
    opened = open_receipt(sign_receipt(receipt, SIGNER), SIGNER.verifier(), origin=ORIGIN)
    assert opened == receipt and opened.count == 3
    opened.check_covers(41, HASHES)
    assert receipt.to_text().startswith("runlog-receipt/v1\nrunlog.example/log\n41\n3\n")


@pytest.mark.parametrize("first_seq, hashes", [(42, HASHES), (41, HASHES[:2]), (41, HASHES[::-1])])
def test_a_receipt_does_not_cover_other_entries(first_seq, hashes):
    with pytest.raises(ReceiptError):
        Receipt.for_entries(ORIGIN, 41, AT, HASHES).check_covers(first_seq, hashes)


def test_tampered_or_foreign_receipts_are_refused():
    note = sign_receipt(Receipt.for_entries(ORIGIN, 41, AT, HASHES), SIGNER)
    with pytest.raises(SignatureError):
        open_receipt(note.replace("\n41\n", "\n40\n"), SIGNER.verifier(), origin=ORIGIN)
    with pytest.raises(SignatureError):
        open_receipt(note, generate_signer(ORIGIN).verifier(), origin=ORIGIN)


def test_a_receipt_is_never_a_checkpoint():
    note = sign_receipt(Receipt.for_entries(ORIGIN, 0, AT, HASHES), SIGNER)
    with pytest.raises(RunlogError):
        open_checkpoint(note, SIGNER.verifier(), origin=ORIGIN)


@given(st.text(max_size=300))
def test_garbage_never_escapes_the_error_family(text):
    try:
        Receipt.from_text(text)
    except RunlogError:
        pass


@given(st.integers(0, 10**16 - 1), st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=5),
       st.sampled_from([AT, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00.5Z"]))
def test_the_writers_signer_makes_the_same_note_as_sign_receipt(first_seq, hashes, received_at):
    expected = sign_receipt(Receipt.for_entries(ORIGIN, first_seq, received_at, hashes), SIGNER)
    assert ReceiptSigner(ORIGIN, SIGNER).sign(first_seq, received_at, hashes) == expected


def test_the_writers_signer_refuses_what_sign_receipt_refuses():
    with pytest.raises(NoteFormatError):
        ReceiptSigner("runlog.example/other", SIGNER)
    with pytest.raises(NoteFormatError):
        ReceiptSigner("runlog-receipt/v1", generate_signer("runlog-receipt/v1"))
    signer = ReceiptSigner(ORIGIN, SIGNER)
    for first_seq, received_at, hashes in [(-1, AT, HASHES), (1, AT, []), (1, "2026-11-28 08:00:00Z", HASHES),
                                           (True, AT, HASHES), (1, AT, [b"short"])]:
        with pytest.raises(RunlogError):
            signer.sign(first_seq, received_at, hashes)

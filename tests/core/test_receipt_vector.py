"""The receipt vectors of tests/vectors/receipt/: the worked example of docs/FORMAT.md ("Receipts")
and one refused receipt per file, named after the threat."""

import json
from pathlib import Path

import pytest

from appliance.core.chain import ChainHead, verify_global_chain
from appliance.core.entry import entry_hash
from appliance.core.errors import NoteFormatError, SignatureError
from appliance.core.keys import NoteSigner, NoteVerifier
from appliance.core.note import sign_note
from appliance.core.receipt import Receipt, ReceiptError, digest_of, open_receipt, sign_receipts

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RECEIPTS = VECTORS / "receipt"
EXPECTED_ERRORS = {"SignatureError": SignatureError, "ReceiptError": ReceiptError, "NoteFormatError": NoteFormatError}
EXAMPLE = json.loads((RECEIPTS / "three-entries-one-request.json").read_text(encoding="utf-8"))
EXAMPLE_V2 = json.loads((RECEIPTS / "v2-three-requests-one-batch.json").read_text(encoding="utf-8"))


def _cases() -> list[str]:
    return sorted(path.stem for path in RECEIPTS.glob("*.json"))


def _open_and_check(case: dict) -> Receipt:
    receipt = open_receipt(case["message"], NoteVerifier.from_text(case["log_verifier_key"]), origin=case["origin"])
    if "covers" in case:
        covers = case["covers"]
        receipt.check_covers(covers["first_seq"], [bytes.fromhex(h) for h in covers["entry_hashes_hex"]])
    return receipt


@pytest.mark.parametrize("name", _cases())
def test_vector(name: str) -> None:
    case = json.loads((RECEIPTS / f"{name}.json").read_text(encoding="utf-8"))
    if case["expect"] == "ok":
        receipt = _open_and_check(case)
        assert receipt.statement() == case["statement"] if "statement" in case else receipt.to_text() == case["text"]
    else:
        with pytest.raises(EXPECTED_ERRORS[case["expect"]]):
            _open_and_check(case)


def test_example_entries_are_the_next_entries_of_the_documented_log() -> None:
    """Entries 2-4 continue the global chain of the two entry vectors and give the listed hashes."""
    valid = VECTORS / "entry" / "valid"
    log = [(valid / "first-entry-of-log.json").read_bytes(), (valid / "closing-entry-with-spans.json").read_bytes()]
    log += (RECEIPTS / EXAMPLE["entries_file"]).read_bytes().splitlines()
    assert verify_global_chain(log) == ChainHead(5, entry_hash(log[-1]))
    assert [entry_hash(data).hex() for data in log[2:]] == EXAMPLE["entry_hashes_hex"]


def test_example_is_reproduced_byte_for_byte() -> None:
    hashes = [bytes.fromhex(h) for h in EXAMPLE["entry_hashes_hex"]]
    assert digest_of(hashes).hex() == EXAMPLE["digest_hex"]
    receipt = Receipt.for_entries(EXAMPLE["origin"], EXAMPLE["first_seq"], EXAMPLE["received_at"], hashes)
    assert (receipt.first_seq, receipt.count) == (EXAMPLE["first_seq"], EXAMPLE["count"])
    assert receipt.to_text() == EXAMPLE["text"]
    signer = NoteSigner.from_text(EXAMPLE["log_signer_key"])
    assert signer.verifier().to_text() == EXAMPLE["log_verifier_key"]
    assert sign_note(receipt.to_text(), [signer]).decode() == EXAMPLE["message"]
    assert Receipt.from_text(EXAMPLE["text"]) == receipt


def test_format_document_shows_this_example() -> None:
    """docs/FORMAT.md ("Receipts") prints this vector; keep the two the same."""
    document = (Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    for line in EXAMPLE["message"].splitlines():
        assert f"    {line}".rstrip() in document.splitlines()
    for digest in EXAMPLE["entry_hashes_hex"]:
        assert digest in document


def test_version_2_example_is_reproduced_byte_for_byte() -> None:
    """The batch of three requests signed again gives the vector's receipt; its first request is
    the version 1 example's."""
    batch = [Receipt.for_entries(EXAMPLE_V2["origin"], request["first_seq"], EXAMPLE_V2["received_at"],
                                 [bytes.fromhex(h) for h in request["entry_hashes_hex"]])
             for request in EXAMPLE_V2["batch"]]
    assert batch[0] == Receipt.from_text(EXAMPLE["text"])
    signed = sign_receipts(batch, NoteSigner.from_text(EXAMPLE_V2["log_signer_key"]))
    assert signed[0] == EXAMPLE_V2["message"] and batch[0].statement() == EXAMPLE_V2["statement"]


def test_format_document_shows_the_version_2_example() -> None:
    document = (Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    for line in EXAMPLE_V2["message"].splitlines():
        assert f"    {line}".rstrip() in document.splitlines()

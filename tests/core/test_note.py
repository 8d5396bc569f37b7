"""C2SP signed notes, checked against golang.org/x/mod/sumdb/note's own test cases.

Vectors in tests/vectors/note/open/ (one file per case, each naming its source) are transcribed
from note_test.go TestOpen, the C2SP signed-note example, and a few derived cases.
"""

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.errors import NoteFormatError, RunlogError, SignatureError
from appliance.core.keys import KeyID, NoteSigner, NoteVerifier, generate_signer
from appliance.core.note import MAX_SIGNATURES, Signature, UnverifiedNoteError, open_note, sign_note

VECTORS = Path(__file__).parents[1] / "vectors" / "note"
ERRORS = {"NoteFormatError": NoteFormatError, "SignatureError": SignatureError,
          "UnverifiedNoteError": UnverifiedNoteError}


def _load(sub):
    return [pytest.param(json.loads(p.read_text("utf-8")), id=p.stem) for p in sorted((VECTORS / sub).glob("*.json"))]


def _message(case) -> bytes:
    if "message_base64" in case:
        return base64.b64decode(case["message_base64"])
    return case["message"].encode("utf-8")


def _signatures(rows):
    return tuple(Signature(name, KeyID.from_hex(key_id), base64.b64decode(b64)[4:]) for name, key_id, b64 in rows)


@pytest.mark.parametrize("case", _load("open"))
def test_open_vectors(case):
    verifiers = [NoteVerifier.from_text(k) for k in case["verifiers"]]
    if case["expect"] == "ok":
        note = open_note(_message(case), verifiers)
        assert note.text == case["text"]
        assert note.verified == _signatures(case["verified"])
        assert note.unverified == _signatures(case["unverified"])
        return
    match = re.escape(case["error_contains"]) if case["error_contains"] else None
    with pytest.raises(ERRORS[case["expect"]], match=match) as caught:
        open_note(_message(case), verifiers)
    if case["expect"] == "SignatureError":
        assert not isinstance(caught.value, UnverifiedNoteError)
    if case["expect"] == "UnverifiedNoteError":
        assert caught.value.note.verified == ()
        assert caught.value.note.unverified == _signatures(case["unverified"])
        if "text" in case:
            assert caught.value.note.text == case["text"]


def test_sign_known_answer():
    # Go's TestSign: deterministic Ed25519 gives byte-identical output.
    case = json.loads((VECTORS / "sign" / "peter-neumann.json").read_text("utf-8"))
    signer = NoteSigner.from_text(case["signer_key"])
    assert sign_note(case["text"], [signer]) == case["message"].encode()
    assert sign_note(case["text"].encode(), [signer]) == case["message"].encode()
    note = open_note(case["message"].encode(), [NoteVerifier.from_text(case["verifier_key"])])
    assert note.text == case["text"]


def test_doubly_signed_example_from_go_docs():
    case = json.loads((VECTORS / "sign" / "peter-neumann-and-enoch-root.json").read_text("utf-8"))
    verifiers = [NoteVerifier.from_text(k) for k in case["verifier_keys"]]
    note = open_note(case["message"].encode(), verifiers)
    assert [s.name for s in note.verified] == ["PeterNeumann", "EnochRoot"]


@pytest.mark.parametrize("text", ["abc", "", "a\x01\n", "a\r\n"])
def test_sign_refuses_malformed_text(text):
    # Go's TestSign "short text"; plus control characters, which no note may contain.
    with pytest.raises(NoteFormatError):
        sign_note(text, [generate_signer("a", bytes(32))])


def test_sign_refuses_no_signers_and_too_many():
    signer = generate_signer("a", bytes(32))
    with pytest.raises(NoteFormatError):
        sign_note("x\n", [])
    with pytest.raises(NoteFormatError):
        sign_note("x\n", [signer] * (MAX_SIGNATURES + 1))
    sign_note("x\n", [signer] * MAX_SIGNATURES)


def test_round_trip_with_multiple_signers_and_blank_lines_in_text():
    a, b = generate_signer("a.example/1", bytes(32)), generate_signer("b.example/2", bytes([1]) * 32)
    text = "line one\n\nline three after a blank line\n\n"
    message = sign_note(text, [a, b])
    note = open_note(message, [b.verifier()])
    assert note.text == text
    assert [s.name for s in note.verified] == ["b.example/2"]
    assert [s.name for s in note.unverified] == ["a.example/1"]


def test_every_single_bit_flip_is_caught():
    signer = generate_signer("log.example", bytes(32))
    message = sign_note("log.example\n5\nroot\n", [signer])
    verifier = signer.verifier()
    for index in range(len(message)):
        for bit in (0x01, 0x20):
            tampered = bytearray(message)
            tampered[index] ^= bit
            with pytest.raises(RunlogError):
                open_note(bytes(tampered), [verifier])


def test_accepts_str_input_and_reports_no_verifier_as_unverified():
    signer = generate_signer("a", bytes(32))
    message = sign_note("hello\n", [signer])
    assert open_note(message.decode(), [signer.verifier()]).text == "hello\n"
    with pytest.raises(UnverifiedNoteError):
        open_note(message, [])


def test_verifier_protocol_admits_other_verifiers():
    class Recording:
        name = "custom"
        key_id = KeyID(b"\x00\x00\x00\x01")

        def __init__(self):
            self.seen = []

        def verify(self, text, signature):
            self.seen.append((text, signature))

    custom = Recording()
    message = b"t\n\n\xe2\x80\x94 custom " + base64.b64encode(b"\x00\x00\x00\x01sig") + b"\n"
    note = open_note(message, [custom])
    assert custom.seen == [(b"t\n", b"sig")]
    assert note.verified == (Signature("custom", custom.key_id, b"sig"),)


def test_a_verifier_that_raises_a_foreign_error_is_contained():
    class Broken:
        name = "broken"
        key_id = KeyID(b"\x00\x00\x00\x01")

        def verify(self, text, signature):
            raise ValueError("boom")

    message = b"t\n\n\xe2\x80\x94 broken " + base64.b64encode(b"\x00\x00\x00\x01sig") + b"\n"
    with pytest.raises(SignatureError, match="boom"):
        open_note(message, [Broken()])


_PETER = NoteVerifier.from_text("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
_SIG_LINE = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    st.builds(lambda t, s: t + "\n\n" + s, st.text(max_size=80), st.text(max_size=120)),
    st.builds(lambda t, s: t + "\n\n" + _SIG_LINE + s, st.text(max_size=40), st.text(max_size=60)),
))
def test_garbage_notes_raise_only_runlog_errors(message):
    try:
        open_note(message, [_PETER])
    except RunlogError:
        pass

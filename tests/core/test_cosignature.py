"""C2SP tlog-cosignature cosignature/v1 (type 0x04): signed message, framing, keys, timestamps.

Vectors in tests/vectors/checkpoint/cosignature/ come from the C2SP spec examples and from
transparency-dev/formats' note_cosigv1_test.go; each file names its source.
"""

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    cosigned_message,
    generate_cosigner,
    timestamp_of,
)
from appliance.core.errors import InvalidInput, NoteFormatError, RunlogError, SignatureError
from appliance.core.keys import NoteVerifier, generate_signer
from appliance.core.note import open_note, sign_note

VECTORS = Path(__file__).parents[1] / "vectors" / "checkpoint" / "cosignature"


def _case(name):
    return json.loads((VECTORS / f"{name}.json").read_text("utf-8"))


def test_signed_message_matches_the_spec_example():
    case = _case("c2sp-signed-message")
    assert cosigned_message(case["body"].encode(), case["timestamp"]) == case["signed_message"].encode()


def test_spec_example_line_framing():
    case = _case("c2sp-example-line")
    name, encoded = case["line"].removeprefix("\u2014 ").split(" ")
    raw = base64.b64decode(encoded)
    assert name == case["name"]
    assert raw[:4].hex() == case["key_id"]
    assert timestamp_of(raw[4:]) == case["timestamp"]


@pytest.mark.parametrize("name", ["transparency-dev-timestamp", "wrong-type-signature"])
def test_timestamp_vectors(name):
    case = _case(name)
    signature = base64.b64decode(case["signature_base64"])[4:]
    if case["timestamp"] is None:
        with pytest.raises(NoteFormatError):
            timestamp_of(signature)
    else:
        assert timestamp_of(signature) == case["timestamp"]


@pytest.mark.parametrize("name", ["remora-verifier-key", "runlog-cosigner-key", "note-key-as-cosigner-key"])
def test_verifier_key_vectors(name):
    case = _case(name)
    if not case["valid"]:
        with pytest.raises(NoteFormatError, match="type 0x01, expected 0x04"):
            CosignatureVerifier.from_text(case["verifier_key"])
        return
    verifier = CosignatureVerifier.from_text(case["verifier_key"])
    assert (verifier.name, verifier.key_id.hex()) == (case["name"], case["key_id"])
    assert verifier.to_text() == case["verifier_key"]
    expected = hashlib.sha256(case["name"].encode() + b"\n\x04" + verifier.public_key).digest()[:4]
    assert verifier.key_id.value == expected
    if "signer_key" in case:
        signer = CosignatureSigner.from_text(case["signer_key"])
        assert signer.to_text() == case["signer_key"]
        assert signer.verifier() == verifier


def test_same_key_has_different_ids_as_note_key_and_cosigner_key():
    seed = bytes(range(32))
    note_key, cosigner = generate_signer("k", seed), generate_cosigner("k", seed)
    assert note_key.public_key == cosigner.public_key
    assert note_key.key_id != cosigner.key_id
    with pytest.raises(NoteFormatError):
        NoteVerifier.from_text(cosigner.verifier().to_text())
    with pytest.raises(NoteFormatError):
        CosignatureSigner.from_text(note_key.to_text())


def test_sign_and_verify_returns_the_timestamp():
    cosigner = generate_cosigner("witness.example/w1", bytes(32))
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    signature = cosigner.sign(body, 1679315147)
    assert len(signature) == 72 and signature[:8] == (1679315147).to_bytes(8, "big")
    verifier = cosigner.verifier()
    assert verifier.verify(body, signature) == 1679315147
    assert verifier.verify(body, cosigner.sign(body, 0)) == 0
    with pytest.raises(SignatureError):
        verifier.verify(body + b"x\n", signature)
    with pytest.raises(SignatureError):
        verifier.verify(body, (1679315148).to_bytes(8, "big") + signature[8:])
    with pytest.raises(SignatureError):
        verifier.verify(body, signature[8:])
    with pytest.raises(SignatureError, match="2\\^63"):
        verifier.verify(body, (2**63).to_bytes(8, "big") + signature[8:])


def test_cosignature_in_a_note_is_a_plain_note_signature_line():
    cosigner = generate_cosigner("witness.example/w1", bytes(32))
    message = sign_note("o\n1\nAAAA\n", [cosigner.at(42)])
    note = open_note(message, [cosigner.verifier()])
    assert timestamp_of(note.verified[0].signature) == 42
    # A plain note verifier for the same name and key does not recognise the line (different ID).
    plain = NoteVerifier(cosigner.name, cosigner.public_key)
    assert plain.key_id != cosigner.key_id


@pytest.mark.parametrize("timestamp", [-1, 2**63, 1.5, "1", True, None])
def test_timestamp_range_is_checked(timestamp):
    cosigner = generate_cosigner("w", bytes(32))
    with pytest.raises(InvalidInput):
        cosigner.at(timestamp)
    with pytest.raises(InvalidInput):
        cosigner.sign(b"x\n", timestamp)


def test_largest_timestamp_round_trips():
    cosigner = generate_cosigner("w", bytes(32))
    assert cosigner.verifier().verify(b"x\n", cosigner.sign(b"x\n", 2**63 - 1)) == 2**63 - 1


def test_repr_hides_the_private_key():
    cosigner = generate_cosigner("w", bytes(32))
    assert "signing_key" not in repr(cosigner) and "signing_key" not in repr(cosigner.at(1))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="PRIVATEKY+abcdef0123456789BCD/=", max_size=90)), st.binary(max_size=90))
def test_garbage_raises_only_runlog_errors(text, raw):
    for parse in (CosignatureVerifier.from_text, CosignatureSigner.from_text):
        try:
            parse(text)
        except RunlogError:
            pass
    try:
        timestamp_of(raw)
    except RunlogError:
        pass
    try:
        generate_cosigner("w", bytes(32)).verifier().verify(b"x\n", raw)
    except RunlogError:
        pass

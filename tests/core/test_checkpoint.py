"""C2SP tlog-checkpoint bodies and signed checkpoints.

Vectors: tests/vectors/checkpoint/body/ (the C2SP example plus one malformed body per rule) and
tests/vectors/checkpoint/signed/ (runlog's deterministic known answers and their tampered forms,
and the C2SP example note). Each file names its source.
"""

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.checkpoint import (
    Checkpoint,
    CheckpointOriginError,
    open_checkpoint,
    sign_checkpoint,
)
from appliance.core.cosignature import Cosignature, CosignatureSigner, CosignatureVerifier, generate_cosigner
from appliance.core.errors import InvalidInput, NoteFormatError, RunlogError, SignatureError
from appliance.core.hashing import EMPTY_ROOT
from appliance.core.keys import KeyID, NoteSigner, NoteVerifier, generate_signer
from appliance.core.note import UnverifiedNoteError, open_note

VECTORS = Path(__file__).parents[1] / "vectors" / "checkpoint"
ERRORS = {"NoteFormatError": NoteFormatError, "SignatureError": SignatureError,
          "UnverifiedNoteError": UnverifiedNoteError, "CheckpointOriginError": CheckpointOriginError}


def _load(sub):
    return [pytest.param(json.loads(p.read_text("utf-8")), id=p.stem) for p in sorted((VECTORS / sub).glob("*.json"))]


@pytest.mark.parametrize("case", _load("body"))
def test_body_vectors(case):
    if not case["valid"]:
        with pytest.raises(NoteFormatError):
            Checkpoint.from_text(case["text"])
        return
    checkpoint = Checkpoint.from_text(case["text"])
    assert checkpoint == Checkpoint(case["origin"], case["size"], bytes.fromhex(case["root_hash_hex"]),
                                    tuple(case["extensions"]))
    assert checkpoint.to_text() == case["text"]
    assert Checkpoint.from_text(case["text"].encode()) == checkpoint


def _open(case):
    return open_checkpoint(
        case["message"].encode(),
        NoteVerifier.from_text(case["log_verifier_key"]),
        origin=case["origin"],
        cosigner_verifiers=[CosignatureVerifier.from_text(k) for k in case["cosigner_verifier_keys"]],
    )


@pytest.mark.parametrize("case", _load("signed"))
def test_signed_vectors(case):
    if case["expect"] != "ok":
        with pytest.raises(ERRORS[case["expect"]], match=re.escape(case["error_contains"])) as caught:
            _open(case)
        if case["expect"] == "SignatureError":
            assert not isinstance(caught.value, UnverifiedNoteError)
        if case["expect"] == "UnverifiedNoteError":
            found = [[s.name, s.key_id.hex()] for s in caught.value.note.unverified]
            assert found == case["unverified"]
        return
    signed = _open(case)
    assert signed.checkpoint.origin == case["origin"]
    assert signed.checkpoint.size == case["size"]
    assert signed.checkpoint.root_hash.hex() == case["root_hash_hex"]
    assert signed.cosignatures == tuple(Cosignature(n, KeyID.from_hex(k), t) for n, k, t in case["cosignatures"])


def test_signing_reproduces_the_known_answer_byte_for_byte():
    case = json.loads((VECTORS / "signed" / "log-and-cosignature.json").read_text("utf-8"))
    log = NoteSigner.from_text(case["log_signer_key"])
    cosigner = CosignatureSigner.from_text(case["cosigner_signer_key"])
    checkpoint = Checkpoint(case["origin"], case["size"], bytes.fromhex(case["root_hash_hex"]))
    assert sign_checkpoint(checkpoint, log, [cosigner], case["timestamp"]) == case["message"].encode()


def test_the_c2sp_example_body_parses_inside_its_note():
    case = json.loads((VECTORS / "signed" / "c2sp-example-unknown-keys.json").read_text("utf-8"))
    with pytest.raises(UnverifiedNoteError) as caught:
        open_note(case["message"].encode(), [])
    body = json.loads((VECTORS / "body" / "c2sp-example.json").read_text("utf-8"))
    assert caught.value.note.text == body["text"]
    assert Checkpoint.from_text(caught.value.note.text).size == 20852163


LOG = generate_signer("runlog.example/log", bytes(32))
CLOCK = generate_cosigner("runlog.example/log/clock", bytes([7]) * 32)
CHECKPOINT = Checkpoint("runlog.example/log", 0, EMPTY_ROOT)


def test_round_trip_with_extensions_and_cosigners():
    checkpoint = Checkpoint("runlog.example/log", 12, bytes(range(32)), ("ext a", "ext b"))
    witness = generate_cosigner("witness.example/w1", bytes([9]) * 32)
    message = sign_checkpoint(checkpoint, LOG, [CLOCK, witness], 1_700_000_000)
    signed = open_checkpoint(message, LOG.verifier(), origin="runlog.example/log",
                             cosigner_verifiers=[CLOCK.verifier(), witness.verifier()])
    assert signed.checkpoint == checkpoint
    assert [(c.name, c.timestamp) for c in signed.cosignatures] == [
        ("runlog.example/log/clock", 1_700_000_000), ("witness.example/w1", 1_700_000_000)]
    assert [s.name for s in signed.note.verified][0] == "runlog.example/log"


def test_cosigner_not_trusted_is_not_reported():
    message = sign_checkpoint(CHECKPOINT, LOG, [CLOCK], 5)
    signed = open_checkpoint(message, LOG.verifier(), origin=CHECKPOINT.origin)
    assert signed.cosignatures == ()
    assert [s.name for s in signed.note.unverified] == [CLOCK.name]


def test_every_byte_flip_is_caught():
    message = sign_checkpoint(CHECKPOINT, LOG, [CLOCK], 1_795_824_000)
    cosigner_line_start = message.rindex("\u2014".encode())
    for index in range(len(message)):
        tampered = bytearray(message)
        tampered[index] ^= 0x04
        try:
            signed = open_checkpoint(bytes(tampered), LOG.verifier(), origin=CHECKPOINT.origin,
                                     cosigner_verifiers=[CLOCK.verifier()])
        except RunlogError:
            continue
        # Renaming the cosigner (or changing its key ID) makes it an unknown key, which a note
        # verifier must ignore: the checkpoint stands, but without the timestamp.
        assert index >= cosigner_line_start, f"flip at byte {index} accepted"
        assert signed.checkpoint == CHECKPOINT and signed.cosignatures == ()


def test_wrong_log_key_and_wrong_origin():
    message = sign_checkpoint(CHECKPOINT, LOG)
    impostor = generate_signer("runlog.example/log", bytes([1]) * 32)
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(message, impostor.verifier(), origin=CHECKPOINT.origin)
    with pytest.raises(CheckpointOriginError, match="expected 'runlog.example/other'") as caught:
        open_checkpoint(message, LOG.verifier(), origin="runlog.example/other")
    assert caught.value.found == "runlog.example/log"


def test_sign_checkpoint_preconditions():
    with pytest.raises(InvalidInput, match="timestamp"):
        sign_checkpoint(CHECKPOINT, LOG, [CLOCK])
    with pytest.raises(InvalidInput, match="differs from checkpoint origin"):
        sign_checkpoint(Checkpoint("other.example", 0, EMPTY_ROOT), LOG)
    with pytest.raises(InvalidInput):
        sign_checkpoint(CHECKPOINT, LOG, [CLOCK], -1)


@pytest.mark.parametrize("kwargs", [
    dict(origin="", size=0, root_hash=EMPTY_ROOT),
    dict(origin="a\nb", size=0, root_hash=EMPTY_ROOT),
    dict(origin="o", size=-1, root_hash=EMPTY_ROOT),
    dict(origin="o", size=2**64, root_hash=EMPTY_ROOT),
    dict(origin="o", size=True, root_hash=EMPTY_ROOT),
    dict(origin="o", size=1, root_hash=b"short"),
    dict(origin="o", size=1, root_hash=EMPTY_ROOT.hex()),
    dict(origin="o", size=1, root_hash=EMPTY_ROOT, extensions=("",)),
    dict(origin="o", size=1, root_hash=EMPTY_ROOT, extensions="ext"),
    dict(origin="o", size=1, root_hash=EMPTY_ROOT, extensions=("a\nb",)),
])
def test_constructor_checks_fields(kwargs):
    with pytest.raises(NoteFormatError):
        Checkpoint(**kwargs)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(lambda o, s, r, e: f"{o}\n{s}\n{r}\n{e}", st.text(max_size=20), st.text("0123456789-+ ", max_size=22),
              st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=46),
              st.text(max_size=20)),
))
def test_garbage_bodies_raise_only_note_format_errors(text):
    try:
        checkpoint = Checkpoint.from_text(text)
    except NoteFormatError:
        return
    expected = text if isinstance(text, str) else text.decode("utf-8")
    assert checkpoint.to_text() == expected


_GOOD = sign_checkpoint(CHECKPOINT, LOG, [CLOCK], 99)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda i, b: _GOOD[:i] + b + _GOOD[i:], st.integers(0, len(_GOOD)), st.binary(max_size=8)),
    st.builds(lambda i, j: _GOOD[:i] + _GOOD[j:], st.integers(0, len(_GOOD)), st.integers(0, len(_GOOD))),
))
def test_garbage_signed_checkpoints_raise_only_runlog_errors(message):
    try:
        signed = open_checkpoint(message, LOG.verifier(), origin=CHECKPOINT.origin,
                                 cosigner_verifiers=[CLOCK.verifier()])
    except RunlogError:
        return
    assert signed.checkpoint == CHECKPOINT
    assert base64.b64encode(CHECKPOINT.root_hash).decode() in message.decode()

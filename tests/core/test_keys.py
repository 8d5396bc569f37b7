"""Ed25519 note keys: key IDs, key strings, signers and verifiers.

Known answers come from golang.org/x/mod/sumdb/note/note_test.go (TestNewVerifier, TestNewSigner,
TestGenerateKey), transcribed to tests/vectors/note/keys/ with their sources.
"""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.errors import NoteFormatError, RunlogError, SignatureError
from appliance.core.keys import KeyID, NoteSigner, NoteVerifier, check_key_name, generate_signer, key_type_of

KEYS = Path(__file__).parents[1] / "vectors" / "note" / "keys"
# Source: golang.org/x/mod/sumdb/note/note_test.go, TestNewVerifier / TestNewSigner.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"


def _key_vectors():
    return [pytest.param(json.loads(p.read_text("utf-8")), id=p.stem) for p in sorted(KEYS.glob("*.json"))]


@pytest.mark.parametrize("case", _key_vectors())
def test_verifier_key_vectors(case):
    if not case["valid"]:
        with pytest.raises(NoteFormatError):
            NoteVerifier.from_text(case["verifier_key"])
        return
    verifier = NoteVerifier.from_text(case["verifier_key"])
    assert verifier.name == case["name"]
    assert verifier.key_id.hex() == case["key_id"]
    assert verifier.to_text() == case["verifier_key"].replace(case["key_id"].upper(), case["key_id"])
    if "signer_key" in case:
        signer = NoteSigner.from_text(case["signer_key"])
        assert signer.to_text() == case["signer_key"]
        assert signer.verifier() == verifier


def test_key_id_is_sha256_of_name_newline_type_and_key():
    # C2SP signed-note: key ID = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]
    import hashlib

    verifier = NoteVerifier.from_text(PETER_VKEY)
    expected = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_key).digest()[:4]
    assert verifier.key_id == KeyID(expected) == KeyID.from_hex("c74f20a3")
    assert repr(verifier.key_id) == "KeyID(c74f20a3)"


def test_every_mangling_of_the_verifier_key_is_rejected():
    # Go's TestNewVerifier: every proper substring and every single-byte increment must fail.
    key = PETER_VKEY.encode()
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                with pytest.raises(NoteFormatError):
                    NoteVerifier.from_text(key[i:j].decode())
    for i in range(len(key)):
        mangled = key[:i] + bytes([key[i] + 1]) + key[i + 1:]
        with pytest.raises(NoteFormatError):
            NoteVerifier.from_text(mangled.decode())


def test_every_mangling_of_the_signer_key_is_rejected():
    # Go's TestNewSigner, same manglings.
    key = PETER_SKEY.encode()
    for i in range(len(key) + 1):
        for j in range(i + 1, len(key) + 1):
            if (i, j) != (0, len(key)):
                with pytest.raises(NoteFormatError):
                    NoteSigner.from_text(key[i:j].decode())
    for i in range(len(key)):
        mangled = key[:i] + bytes([key[i] + 1]) + key[i + 1:]
        with pytest.raises(NoteFormatError):
            NoteSigner.from_text(mangled.decode())


def test_generated_signer_and_verifier_agree():
    # Go's TestGenerateKey / testSignerAndVerifier.
    signer = generate_signer("EnochRoot")
    verifier = NoteVerifier.from_text(signer.verifier().to_text())
    assert signer.name == verifier.name == "EnochRoot"
    assert signer.key_id == verifier.key_id
    signature = bytearray(signer.sign(b"hi"))
    verifier.verify(b"hi", bytes(signature))
    signature[0] ^= 1
    with pytest.raises(SignatureError, match="invalid signature for key EnochRoot"):
        verifier.verify(b"hi", bytes(signature))
    with pytest.raises(SignatureError):
        verifier.verify(b"hj", signer.sign(b"hi"))
    assert NoteSigner.from_text(signer.to_text()).to_text() == signer.to_text()


def test_seed_makes_signer_deterministic_and_repr_hides_it():
    seed = bytes(range(32))
    first, second = generate_signer("log.example/a", seed), generate_signer("log.example/a", seed)
    assert first.to_text() == second.to_text()
    assert first.sign(b"x") == second.sign(b"x")
    assert "signing_key" not in repr(first)
    assert generate_signer("log.example/a").to_text() != first.to_text()


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "tab\tname", "a\x01b", "\ud800"])
def test_invalid_key_names_are_refused(name):
    with pytest.raises(NoteFormatError):
        check_key_name(name)
    with pytest.raises(NoteFormatError):
        generate_signer(name, bytes(32))


@pytest.mark.parametrize("name", ["example.com/log", "quasimodo.example/salvatore", "ünïcödé", "a\u200bb"])
def test_valid_key_names(name):
    assert check_key_name(name) == name
    signer = generate_signer(name, bytes(32))
    assert NoteVerifier.from_text(signer.verifier().to_text()) == signer.verifier()


@pytest.mark.parametrize("length", [0, 31, 33])
def test_lengths_are_checked_at_construction(length):
    with pytest.raises(NoteFormatError):
        NoteVerifier("x", bytes(length))
    with pytest.raises(NoteFormatError):
        NoteSigner.from_seed("x", bytes(length))
    with pytest.raises(NoteFormatError):
        KeyID(bytes(length % 4 + 5))


def test_key_type_of_reads_the_signature_type_byte():
    assert key_type_of(PETER_VKEY) == 0x01
    assert key_type_of(PETER_SKEY) == 0x01
    with pytest.raises(NoteFormatError):
        key_type_of("nonsense")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="PRIVATEKY+abcdef0123456789ABC/=", max_size=90)))
def test_garbage_key_strings_raise_only_runlog_errors(text):
    for parse in (NoteVerifier.from_text, NoteSigner.from_text, key_type_of):
        try:
            parse(text)
        except RunlogError:
            pass

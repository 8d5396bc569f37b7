"""Key files: created 0600/0644 exclusively, refused when too open, Go-format contents."""

import os
import stat

import pytest

from appliance.core.cosignature import CosignatureSigner, CosignatureVerifier, generate_cosigner
from appliance.core.keys import NoteSigner, NoteVerifier, generate_signer
from appliance.keyfile import KeyFileError, load_signer, load_verifier, save_signer, save_verifier

# Source: golang.org/x/mod/sumdb/note/note_test.go, TestNewSigner / TestNewVerifier.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_signer_file_is_created_0600_in_go_format_even_with_a_lax_umask(tmp_path):
    path = tmp_path / "log.key"
    old = os.umask(0o000)
    try:
        save_signer(path, NoteSigner.from_text(PETER_SKEY))
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert path.read_text() == PETER_SKEY + "\n"
    assert load_signer(path).to_text() == PETER_SKEY


def test_verifier_file_is_created_0644(tmp_path):
    path = tmp_path / "log.pub"
    save_verifier(path, NoteVerifier.from_text(PETER_VKEY))
    assert _mode(path) == 0o644
    assert path.read_text() == PETER_VKEY + "\n"
    assert load_verifier(path) == NoteVerifier.from_text(PETER_VKEY)


def test_cosigner_keys_round_trip(tmp_path):
    cosigner = generate_cosigner("runlog.example/log/clock", bytes(32))
    save_signer(tmp_path / "clock.key", cosigner)
    save_verifier(tmp_path / "clock.pub", cosigner.verifier())
    loaded = load_signer(tmp_path / "clock.key")
    assert isinstance(loaded, CosignatureSigner) and loaded.to_text() == cosigner.to_text()
    verifier = load_verifier(tmp_path / "clock.pub")
    assert isinstance(verifier, CosignatureVerifier) and verifier == cosigner.verifier()


@pytest.mark.parametrize("save, key", [
    (save_signer, generate_signer("a", bytes(32))),
    (save_verifier, generate_signer("a", bytes(32)).verifier()),
])
def test_existing_files_are_never_overwritten(tmp_path, save, key):
    path = tmp_path / "existing"
    path.write_text("keep me")
    with pytest.raises(KeyFileError, match="already exists"):
        save(path, key)
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660, 0o700 | 0o002])
def test_private_key_readable_by_others_is_refused_with_the_fix(tmp_path, mode):
    path = tmp_path / "log.key"
    save_signer(path, generate_signer("a", bytes(32)))
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as caught:
        load_signer(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert f"{mode:04o}" in str(caught.value)


def test_owner_only_modes_are_accepted(tmp_path):
    path = tmp_path / "log.key"
    save_signer(path, generate_signer("a", bytes(32)))
    os.chmod(path, 0o400)
    assert load_signer(path).name == "a"


def test_public_key_files_may_be_world_readable_and_accept_crlf(tmp_path):
    path = tmp_path / "log.pub"
    path.write_text(PETER_VKEY + "\r\n")
    os.chmod(path, 0o644)
    assert load_verifier(path).name == "PeterNeumann"


@pytest.mark.parametrize("content, message", [
    ("not a key\n", "not a valid"),
    (PETER_SKEY.replace("c74f20a3", "c74f20a4") + "\n", "not a valid"),
    ("", "not a valid"),
])
def test_malformed_signer_files(tmp_path, content, message):
    path = tmp_path / "bad.key"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=message):
        load_signer(path)


def test_private_key_offered_as_verifier_is_refused(tmp_path):
    path = tmp_path / "oops.pub"
    path.write_text(PETER_SKEY + "\n")
    with pytest.raises(KeyFileError, match="private signer key"):
        load_verifier(path)


def test_missing_binary_directory_and_oversized_files(tmp_path):
    with pytest.raises(KeyFileError, match="no key file"):
        load_signer(tmp_path / "absent")
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_verifier(tmp_path)
    binary = tmp_path / "binary.pub"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(KeyFileError, match="UTF-8"):
        load_verifier(binary)
    huge = tmp_path / "huge.pub"
    huge.write_bytes(b"a" * (65 * 1024))
    with pytest.raises(KeyFileError, match="too large"):
        load_verifier(huge)
    with pytest.raises(KeyFileError, match="cannot create"):
        save_signer(tmp_path / "no" / "such" / "dir.key", generate_signer("a", bytes(32)))

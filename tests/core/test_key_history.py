"""Keys with validity windows: the keys file, and opening checkpoints across a rotation (the
handover note signed by old and new keys; a retired key used after its window; a retired clock)."""

import hashlib
import json
import re
from pathlib import Path

import pytest

from appliance.core.checkpoint import Checkpoint, open_checkpoint
from appliance.core.cosignature import CosignatureSigner, generate_cosigner
from appliance.core.errors import SignatureError
from appliance.core.key_history import (
    KeysFileError,
    KeyWindow,
    KeyWindowError,
    TrustedKeys,
    format_seconds,
    open_trusted_checkpoint,
    parse_seconds,
)
from appliance.core.keys import NoteSigner, generate_signer
from appliance.core.note import sign_note
from appliance.core.policy import Policy, PolicyError

ORIGIN = "runlog.example/log"
OLD_LOG = generate_signer(ORIGIN, seed=hashlib.sha256(b"old log").digest())
NEW_LOG = generate_signer(ORIGIN, seed=hashlib.sha256(b"new log").digest())
OLD_CLOCK = generate_cosigner(f"{ORIGIN}/clock", seed=hashlib.sha256(b"old clock").digest())
NEW_CLOCK = generate_cosigner(f"{ORIGIN}/clock", seed=hashlib.sha256(b"new clock").digest())
BORN, ROTATED, HANDOVER = parse_seconds("2026-11-01T00:00:00Z"), parse_seconds("2026-11-28T10:00:00Z"), \
    parse_seconds("2026-11-28T10:05:00Z")
BODY = Checkpoint(ORIGIN, 7, hashlib.sha256(b"root").digest()).to_text()

PUBLISHED = (
    "runlog-keys/v1\n"
    f"log {OLD_LOG.verifier().to_text()} 2026-11-01T00:00:00Z 2026-11-28T10:05:00Z\n"
    f"log {NEW_LOG.verifier().to_text()} 2026-11-28T10:00:00Z -\n"
    f"clock {OLD_CLOCK.verifier().to_text()} 2026-11-01T00:00:00Z 2026-11-28T10:05:00Z\n"
    f"clock {NEW_CLOCK.verifier().to_text()} 2026-11-28T10:00:00Z -\n"
)
KEYS = TrustedKeys.from_text(PUBLISHED)
OLD_ONLY = TrustedKeys(KEYS.log[:1], KEYS.clock[:1])
NEW_ONLY = TrustedKeys(KEYS.log[1:], KEYS.clock[1:])


def note(logs, clocks, at: int) -> bytes:
    return sign_note(BODY, [*logs, *(c.at(at) for c in clocks)])


HANDOVER_NOTE = note([NEW_LOG, OLD_LOG], [NEW_CLOCK, OLD_CLOCK], HANDOVER)


def test_the_keys_file_round_trips_byte_for_byte():
    assert KEYS.to_text() == PUBLISHED
    assert [w.role for w in (*KEYS.log, *KEYS.clock)] == ["log", "log", "clock", "clock"]
    assert KEYS.current_log == NEW_LOG.verifier() and KEYS.origin == ORIGIN
    assert (KEYS.log[0].valid_from, KEYS.log[0].valid_until, KEYS.log[1].valid_until) == (BORN, HANDOVER, None)
    assert format_seconds(HANDOVER) == "2026-11-28T10:05:00Z"
    commented = "# published 2026-11-28\n\n" + PUBLISHED.replace("\nclock", "\n  # clocks next\nclock", 1)
    assert TrustedKeys.from_text(commented) == KEYS


@pytest.mark.parametrize("text, words", [
    ("log x\n", "starts with the line"),
    ("runlog-keys/v1\n", "at least one log key"),
    (PUBLISHED.replace("log ", "witness ", 1), "expected 'log|clock"),
    (PUBLISHED.replace(" -\n", "\n", 1), "expected 'log|clock"),
    (PUBLISHED.replace("2026-11-28T10:05:00Z", "2026-11-28T10:05:00.5Z", 1), "is not YYYY-MM-DDTHH:MM:SSZ"),
    (PUBLISHED.replace("2026-11-28T10:05:00Z", "2026-02-30T10:05:00Z", 1), "not a real UTC time"),
    (PUBLISHED.replace("2026-11-28T10:05:00Z", "2026-10-01T00:00:00Z", 1), "valid until before"),
    (PUBLISHED.replace(f"log {NEW_LOG.verifier().to_text()}", f"clock {NEW_LOG.verifier().to_text()}"),
     "a clock key must be a cosignature/v1"),
    (PUBLISHED + PUBLISHED.splitlines(keepends=True)[1], "listed twice"),
    (PUBLISHED + f"log {generate_signer('another/log').verifier().to_text()} 2026-11-01T00:00:00Z -\n", "one name"),
    (PUBLISHED.replace(OLD_LOG.verifier().to_text(), OLD_LOG.verifier().to_text()[:-4] + "AAA="), "key"),
])
def test_a_malformed_keys_file_is_refused_with_its_reason(text, words):
    with pytest.raises(KeysFileError, match=words):
        TrustedKeys.from_text(text)


@pytest.mark.parametrize("trusted", [KEYS, OLD_ONLY, NEW_ONLY], ids=["published", "old-only", "new-only"])
def test_the_handover_checkpoint_verifies_with_either_key(trusted):
    opened = open_trusted_checkpoint(HANDOVER_NOTE, trusted, origin=ORIGIN)
    assert opened.signed_at == HANDOVER and opened.checkpoint.size == 7
    # and with the plain single-key opener of each key, as Go's note verifier does
    for log in (OLD_LOG, NEW_LOG):
        assert open_checkpoint(HANDOVER_NOTE, log.verifier(), origin=ORIGIN).checkpoint.size == 7


def test_before_and_after_rotation_each_verifies_with_the_published_keys():
    before = note([OLD_LOG], [OLD_CLOCK], ROTATED - 3600)
    after = note([NEW_LOG], [NEW_CLOCK], HANDOVER + 86_400)
    assert open_trusted_checkpoint(before, KEYS, origin=ORIGIN).log_keys[0].verifier == OLD_LOG.verifier()
    assert open_trusted_checkpoint(after, KEYS, origin=ORIGIN).log_keys[0].verifier == NEW_LOG.verifier()


def test_a_retired_log_key_after_its_window_is_rejected_by_name():
    # Someone holding the old log key (and clock) signs a checkpoint dated after the handover.
    forged = note([OLD_LOG], [NEW_CLOCK], HANDOVER + 1)
    with pytest.raises(KeyWindowError, match="after its validity window ended") as caught:
        open_trusted_checkpoint(forged, KEYS, origin=ORIGIN)
    assert OLD_LOG.verifier().key_id.hex() in str(caught.value) and "2026-11-28T10:05:01Z" in str(caught.value)
    # the retired clock key cannot vouch for a time after its own window either
    with pytest.raises(KeyWindowError, match="retired clock key was used after its window"):
        open_trusted_checkpoint(note([OLD_LOG], [OLD_CLOCK], HANDOVER + 1), KEYS, origin=ORIGIN)


def test_a_new_key_backdated_before_its_window_is_rejected():
    with pytest.raises(KeyWindowError, match="outside its validity window"):
        open_trusted_checkpoint(note([NEW_LOG], [OLD_CLOCK], ROTATED - 60), KEYS, origin=ORIGIN)


def test_a_windowed_key_needs_an_attested_time_an_unbounded_one_does_not():
    untimed = sign_note(BODY, [NEW_LOG])
    with pytest.raises(KeyWindowError, match="no trusted clock key attests its time"):
        open_trusted_checkpoint(untimed, KEYS, origin=ORIGIN)
    opened = open_trusted_checkpoint(untimed, TrustedKeys.unbounded(NEW_LOG.verifier()), origin=ORIGIN)
    assert opened.signed_at is None


def test_an_unknown_log_key_and_a_bad_signature_stay_signature_errors():
    stranger = generate_signer(ORIGIN)
    with pytest.raises(SignatureError, match="not signed by any of the trusted log keys"):
        open_trusted_checkpoint(note([stranger], [NEW_CLOCK], HANDOVER), KEYS, origin=ORIGIN)
    flipped = HANDOVER_NOTE.replace(b"\n7\n", b"\n8\n")
    with pytest.raises(SignatureError):
        open_trusted_checkpoint(flipped, KEYS, origin=ORIGIN)


def test_windows_are_inclusive_at_both_ends():
    window = KeyWindow(OLD_LOG.verifier(), BORN, HANDOVER)
    assert window.covers(BORN) and window.covers(HANDOVER) and not window.covers(HANDOVER + 1)
    assert not window.covers(BORN - 1) and KeyWindow(OLD_LOG.verifier()).covers(0)


def test_a_policy_lists_every_log_key_with_its_window_and_the_clock_keys():
    lines = PUBLISHED.splitlines()[1:]
    text = "\n".join([lines[0], lines[1].replace(" 2026", " https://log.example/ 2026", 1), *lines[2:],
                      f"witness w {NEW_CLOCK.verifier().to_text()}", "quorum none", ""])
    policy = Policy.from_text(text)
    assert policy.keys == KEYS and policy.log == NEW_LOG.verifier()
    assert Policy.from_text(f"log {OLD_LOG.verifier().to_text()} https://x/\nquorum none\n").keys.log[0].bounded is False
    with pytest.raises(PolicyError, match="from"):
        Policy.from_text(f"log {OLD_LOG.verifier().to_text()} yesterday -\nquorum none\n")


# ---- published vectors: tests/vectors/keys/ (one case per file, named after what it shows) ----------

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "keys"
EXPECTED_ERRORS = {"retired": "after its validity window ended (a retired key)",
                   "retired-clock": "a retired clock key was used after its window ended",
                   "outside": "outside its validity window"}


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.stem)
def test_rotation_vectors(path):
    case = json.loads(path.read_text())
    trusted = TrustedKeys.from_text(case["keys_file"])
    assert trusted.to_text() == case["keys_file"] == (VECTORS / "published.keys").read_text()
    if case["expect"] == "ok":
        opened = open_trusted_checkpoint(case["message"], trusted, origin=case["origin"])
        assert opened.signed_at == case["timestamp"]
    else:
        with pytest.raises(KeyWindowError, match=re.escape(EXPECTED_ERRORS[case["expect"]])):
            open_trusted_checkpoint(case["message"], trusted, origin=case["origin"])


def test_the_handover_vector_is_reproduced_by_re_signing():
    case = json.loads((VECTORS / "handover-signed-by-both.json").read_text())
    keys = case["signer_keys"]
    body, at = case["message"].split("\n\n")[0] + "\n", case["timestamp"]
    signers = [NoteSigner.from_text(keys["new_log"]), NoteSigner.from_text(keys["old_log"]),
               CosignatureSigner.from_text(keys["new_clock"]).at(at), CosignatureSigner.from_text(keys["old_clock"]).at(at)]
    assert sign_note(body, signers).decode() == case["message"]

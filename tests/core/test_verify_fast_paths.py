"""The offline verifier's fast paths against the slow, obviously-correct ones they stand for:
`ProofMemo.holds` (tlog-proofs checked with the previous proof's upper path remembered) against
`TlogProof.from_text` + `verify_inclusion`, and `bundle_digest`'s piecewise entries against
`rfc8785` of the whole bundle."""

from __future__ import annotations

import base64
import hashlib
import json
from unittest import mock

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.bundle import bundle_digest
from appliance.core.errors import InvalidInput, RunlogError
from appliance.core.hashing import leaf_hash
from appliance.core.proof_memo import ProofMemo
from appliance.core.proof_plan import inclusion_proof
from appliance.core.proof_verify import verify_inclusion
from appliance.core.tlog_proof import TlogProof
from appliance.core.tree import root_from_leaf_hashes

LEAVES = [leaf_hash(b"leaf %d" % n) for n in range(300)]
NOTE = "runlog.example/log\n300\nroot\n\n\u2014 runlog.example/log AAAA\n"  # a note's shape; only its text matters here


def _proof_text(index: int, size: int) -> str:
    hashes = inclusion_proof(index, size, lambda node: root_from_leaf_hashes(LEAVES[node.begin:node.end]))
    return TlogProof(index, tuple(hashes), NOTE).to_text()


def _slow_holds(text: str, index: int, size: int, root: bytes) -> bool:
    """What the bundle verifier's long way accepts."""
    try:
        proof = TlogProof.from_text(text)
        if proof.checkpoint != NOTE or proof.index != index:
            return False
        verify_inclusion(index, size, LEAVES[index], list(proof.hashes), root)
    except RunlogError:
        return False
    return True


_EDIT = st.tuples(st.sampled_from(["replace", "delete", "insert"]), st.integers(0, 2000),
                  st.sampled_from(["A", "B", "w", "=", "+", "\n", "0", "1", "\u00e9", "\x00"]))


def _edited(text: str, edit: tuple[str, int, str]) -> str:
    kind, at, char = edit
    at %= len(text) + 1
    if kind == "replace":
        return text[:at] + char + text[at + 1:]
    if kind == "delete":
        return text[:at] + text[at + 1:]
    return text[:at] + char + text[at:]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.lists(st.tuples(st.integers(0, 299), st.none() | _EDIT), min_size=1, max_size=12),
       st.booleans())
def test_proof_memo_accepts_only_what_the_long_way_accepts(size, picks, in_order):
    """Genuine proofs are accepted, in seq order or not, and an edited one exactly when the long way
    accepts it (only an edit that changes nothing)."""
    root = root_from_leaf_hashes(LEAVES[:size])
    memo = ProofMemo(NOTE, size, root)
    picks = [(index % size, edit) for index, edit in picks]
    if in_order:
        picks.sort(key=lambda pick: pick[0])
    for index, edit in picks:
        text = _proof_text(index, size)
        if edit is not None:
            text = _edited(text, edit)
        fast = memo.holds(text, index, LEAVES[index])
        assert fast == _slow_holds(text, index, size, root), (index, size, edit)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 300), st.data())
def test_proof_memo_refuses_a_changed_upper_hash_after_good_proofs(size, data):
    """The memo's shortcut compares the rest of the text: a later proof whose shared upper line was
    changed is hashed to the end and refused."""
    root = root_from_leaf_hashes(LEAVES[:size])
    memo = ProofMemo(NOTE, size, root)
    first, second = sorted(data.draw(st.lists(st.integers(0, size - 1), min_size=2, max_size=2, unique=True)))
    assert memo.holds(_proof_text(first, size), first, LEAVES[first])
    text = _proof_text(second, size)
    lines = text.split("\n")
    hashes = [n for n, line in enumerate(lines) if n >= 2 and len(line) == 44]
    if not hashes:
        return
    line = data.draw(st.sampled_from(hashes))
    changed = bytearray(hashlib.sha256(lines[line].encode()).digest())
    lines[line] = base64.b64encode(bytes(changed)).decode()
    forged = "\n".join(lines)
    assert not memo.holds(forged, second, LEAVES[second])
    assert not _slow_holds(forged, second, size, root)
    assert memo.holds(text, second, LEAVES[second])


def test_proof_memo_never_raises_on_odd_input():
    memo = ProofMemo(NOTE, 5, root_from_leaf_hashes(LEAVES[:5]))
    for text in (None, b"bytes", 7, "", NOTE, "\n" + NOTE, "c2sp.org/tlog-proof@v1\nindex 1\n\n" + NOTE):
        assert memo.holds(text, 1, LEAVES[1]) is False
    assert memo.holds(_proof_text(1, 5), 7, LEAVES[1]) is False  # index beyond the tree
    assert memo.holds(_proof_text(1, 5), 1, LEAVES[2]) is False


# -- the file digest ---------------------------------------------------------------------------------

_TEXT = st.text(st.characters(), max_size=40)  # controls, quotes, backslashes, astral, lone surrogates
_ITEM = st.one_of(
    st.fixed_dictionaries({"entry": _TEXT, "proof": _TEXT}),
    st.dictionaries(st.sampled_from(["entry", "proof", "extra"]), _TEXT | st.integers(), max_size=3),
    st.text(max_size=3),
)
_MEMBER_KEYS = st.sampled_from(["format", "checkpoint", "anchors", "trace_id", "signature", "z_9", "b\u00e9", "a\"b",
                                "\U0001f600", "\ud800", "Zeta", "zeta"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_ITEM, max_size=6), st.dictionaries(_MEMBER_KEYS, _TEXT | st.integers(-10, 10), max_size=5),
       st.booleans())
def test_bundle_digest_equals_sha256_of_rfc8785(entries, others, entries_a_list):
    bundle = {**others, "entries": entries if entries_a_list else {"not": entries}}
    unsigned = {key: value for key, value in bundle.items() if key != "signature"}
    try:
        expected = hashlib.sha256(rfc8785.dumps(unsigned)).digest()
    except Exception:  # noqa: BLE001 - what rfc8785 refuses (lone surrogates), the digest refuses in the family
        with pytest.raises(InvalidInput):
            bundle_digest(bundle)
        return
    assert bundle_digest(bundle) == expected


def test_bundle_digest_of_a_real_shaped_bundle_takes_the_pieces_path():
    bundle = {"format": "runlog-evidence/v1", "trace_id": "ab" * 16, "checkpoint": NOTE, "daily_roots": [],
              "anchors": [], "exported_at": "2026-03-02T00:00:00Z", "keys": {"log": "k", "clock": None},
              "entries": [{"entry": '{"attrs":{"msg":"caf\u00e9 \\"q\\""},"seq":1}', "proof": _proof_text(n, 9)}
                          for n in range(9)],
              "signature": "ignored"}
    unsigned = {key: value for key, value in bundle.items() if key != "signature"}
    assert bundle_digest(bundle) == hashlib.sha256(rfc8785.dumps(unsigned)).digest()


def test_proof_memo_hashes_each_proof_only_up_to_the_previous_path(monkeypatch):
    from appliance.core import proof_memo

    calls = []
    monkeypatch.setattr(proof_memo, "sha256", lambda data: calls.append(1) or hashlib.sha256(data))
    memo = ProofMemo(NOTE, 300, root_from_leaf_hashes(LEAVES))
    assert all(memo.holds(_proof_text(index, 300), index, LEAVES[index]) for index in range(300))
    # Leaf n's path joins leaf n-1's at the level of their indexes' highest differing bit: about 2
    # hashes per proof, instead of the 8 or 9 of a proof hashed to the root.
    full = sum(len(TlogProof.from_text(_proof_text(index, 300)).hashes) for index in range(300))
    assert len(calls) <= 2 * 300 < full / 4


# -- the file signature, checked on the file's own bytes first --------------------------------------

def _outcome(data: bytes) -> object:
    from appliance.core.bundle_verify import verify_bundle

    from tests.core.test_bundle import SIGNER

    try:
        return verify_bundle(data, key=SIGNER.verifier())
    except RunlogError as error:
        return type(error), str(error)


def _slow_outcome(data: bytes) -> object:
    """What verify_bundle gives without the fast path (the bundle's RFC 8785 digest only)."""
    with mock.patch("appliance.core.bundle_verify.signed_bytes_digest", lambda data, signature: None):
        return _outcome(data)


def _signed_file() -> bytes:
    from tests.core.test_bundle import make_signed_bundle

    return make_signed_bundle().data


def test_signed_bytes_digest_is_bundle_digest_of_a_file_as_exported():
    from appliance.core.bundle import signed_bytes_digest

    data = _signed_file()
    bundle = json.loads(data)
    assert signed_bytes_digest(data, bundle["signature"]) == bundle_digest(bundle)
    assert signed_bytes_digest(data, bundle["signature"] + "x") is None
    assert signed_bytes_digest(data, "\ud800") is None


_FILE_EDIT = st.tuples(st.sampled_from(["replace", "delete", "insert"]), st.integers(0, 10**6),
                       st.sampled_from([b" ", b"\n", b",", b"}", b'"', b"\\", b"0", b"a", b"=", b"\xc3\xa9"]))


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(_FILE_EDIT, min_size=1, max_size=3))
def test_the_file_signature_fast_path_decides_as_the_bundle_digest(edits):
    data = _signed_file()
    for kind, at, byte in edits:
        at %= len(data) + 1
        data = (data[:at] + byte + data[at + 1:] if kind == "replace" else data[:at] + data[at + 1:]
                if kind == "delete" else data[:at] + byte + data[at:])
    assert _outcome(data) == _slow_outcome(data)


def test_the_file_signature_fast_path_on_a_moved_or_copied_signature_member():
    data = _signed_file()
    bundle = json.loads(data)
    member = b',"signature":' + json.dumps(bundle["signature"], ensure_ascii=False).encode()
    assert data.count(member) == 1
    unsigned = data.replace(member, b"")
    keys = b'"keys":{'
    variants = [
        unsigned[:-1] + member + b"}",  # moved to the end: the same bundle, not RFC 8785 order
        unsigned.replace(keys, keys + member[1:] + b",", 1),  # in `keys` only: no top-level signature
        data.replace(keys, keys + member[1:] + b",", 1),  # in `keys` too: `keys` is not what was signed
        data[:-1] + member + b"}",  # twice at the top level (JSON keeps the last)
        data.replace(member, b" " + member),  # whitespace: not RFC 8785, verifies the slow way
        json.dumps(bundle, indent=1).encode(),
    ]
    outcomes = [_outcome(variant) for variant in variants]
    assert outcomes == [_slow_outcome(variant) for variant in variants]
    assert not isinstance(outcomes[1], tuple) or "signature is missing" in outcomes[1][1]
    assert [isinstance(outcome, tuple) for outcome in outcomes] == [False, True, True, False, False, False]

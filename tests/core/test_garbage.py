"""Garbage in, only `RunlogError` out: every parser and verifier of appliance.core in one place.

Each target below gets hypothesis-made garbage: arbitrary text and bytes, values of the wrong
type, and near misses (a valid input with a few characters, bytes, bits or list items changed).
The only exception allowed to escape is `appliance.core.errors.RunlogError`; a raw ValueError,
binascii.Error, KeyError, IndexError, UnicodeError, TypeError or RecursionError fails the test.
`test_every_public_parser_is_covered` keeps the catalogue in step with the code.
"""

import hashlib
import importlib
import inspect
import json
import pkgutil
from collections.abc import Callable
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import appliance.core
from appliance.core import chain, checkpoint, compact, cosignature, entry, keys, note, proof_plan
from appliance.core import proof_verify, receipt, sequencer, tiles, timefmt, tracecontext, tree
from appliance.core.errors import RunlogError
from appliance.core.hashing import node_hash
from appliance.core import bundle_verify, csv_export, key_history, policy, tlog_proof
from tests.core.test_bundle import BUNDLE_BYTES, LOG as _BUNDLE_LOG, RUN as _BUNDLE_RUN, SIGNER as _BUNDLE_SIGNER
from tests.fuzz import examples

_BUNDLE_TEXT = BUNDLE_BYTES.decode()
_BUNDLE_KEY = _BUNDLE_SIGNER.verifier()
_TLOG_PROOF = json.loads(BUNDLE_BYTES)["entries"][0]["proof"]
_CSV = csv_export.build_csv([data for data in _BUNDLE_LOG if json.loads(data)["trace_id"] == _BUNDLE_RUN])
_CSV_NOTE = csv_export.sign_csv(_CSV, trace_id=_BUNDLE_RUN, rows=_CSV.count(b"\r\n") - 1, signer=_BUNDLE_SIGNER,
                                checkpoint=checkpoint.Checkpoint.from_text(json.loads(BUNDLE_BYTES)["checkpoint"]
                                                                           .split("\n\n")[0] + "\n"))

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ORIGIN = "runlog.example/log"
LOG_SIGNER = keys.generate_signer(ORIGIN, seed=hashlib.sha256(b"runlog test vector: log key").digest())
COSIGNER = cosignature.generate_cosigner(
    f"{ORIGIN}/clock", seed=hashlib.sha256(b"runlog test vector: cosigner key").digest()
)
LOG_VERIFIER, CLOCK_VERIFIER = LOG_SIGNER.verifier(), COSIGNER.verifier()

# ---- valid seeds that the near-miss strategies mutate -------------------------------------------

GOOD_LOG = (VECTORS / "chain" / "good-log.ndjson").read_bytes().splitlines()
ENTRIES = GOOD_LOG + [p.read_bytes() for p in sorted((VECTORS / "entry" / "valid").glob("*.json"))]
CHECKPOINT = checkpoint.Checkpoint(ORIGIN, 3, hashlib.sha256(b"a root").digest())
SIGNED_CHECKPOINT = checkpoint.sign_checkpoint(CHECKPOINT, LOG_SIGNER, [COSIGNER], timestamp=1795824000)
RECEIPT = receipt.Receipt.for_entries(ORIGIN, 41, "2026-11-28T08:00:00.000001Z",
                                      [hashlib.sha256(data).digest() for data in GOOD_LOG[:3]])
SIGNED_RECEIPT = receipt.sign_receipts([RECEIPT], LOG_SIGNER)[0]
KEY_STRINGS = [LOG_SIGNER.to_text(), LOG_VERIFIER.to_text(), COSIGNER.to_text(), CLOCK_VERIFIER.to_text()]
_KEYS_FILE = (f"runlog-keys/v1\nlog {LOG_VERIFIER.to_text()} 2026-11-01T00:00:00Z 2026-11-28T00:00:00Z\n"
              f"clock {CLOCK_VERIFIER.to_text()} 2026-11-01T00:00:00Z -\n")
TRACEPARENTS = ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds"]
TRACESTATES = ["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "tenant@vendor=v , k=v"]
XRAY = ["Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "Root=1-5759E988-BD862E3FE1BE46A994272793"]
TIMES = ["2026-03-01T09:00:00.123Z", "2026-03-01T11:00:00.123456789+02:00", "1999-12-31t23:59:59z"]
TILE_PATHS = ["tile/0/x001/x234/067", "tile/4/x001/x234/067.p/1", "tile/1/000.p/255"]


# The tree of identical entries: every perfect node at one level has the same hash, so a node
# reader is a table lookup and any size has a matching root without hashing its leaves. Sizes go
# up to 2^70 here (past Go's uint64), so the table has a level for each.
_LEVEL_HASHES = [hashlib.sha256(b"\x00synthetic entry").digest()]
for _ in range(72):
    _LEVEL_HASHES.append(node_hash(_LEVEL_HASHES[-1], _LEVEL_HASHES[-1]))


def _synthetic_node(node: tree.NodeID) -> bytes:
    return _LEVEL_HASHES[node.level]


def _root(size: int) -> bytes:
    """Root of the synthetic tree: its peaks, read with the same node reader, folded."""
    peaks = [_synthetic_node(node) for node in tree.perfect_subtrees(0, size)]
    return compact.CompactRange.from_peaks(size, peaks).root()


# ---- strategies ------------------------------------------------------------------------------------

# Characters that mean something to one of the formats, plus some that trip up Unicode handling.
ODD_CHARS = st.sampled_from(list("\n\r\t -+=,;/.@:\"{}[]\\0fFxZTz")
                            + ["\u2014", "\u00e9", "\u0663", "\x00", "\x1f", "\x7f", "\x85", "\u2028", "\ud800",
                               "\udfff", "\U0001f602"])
ODD_BYTES = st.sampled_from([b"\x00", b"\xff", b"\x80", b"\xc3", b"\xe2\x80", b"\n", b'"', b"{", b"}", b"0", b"-",
                             b"\\"])
# Integers stay small: some helpers (tiles_for_size) build one object per tile of a trusted size.
WRONG_TYPES = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(), st.binary(max_size=8),
                        st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def near_miss_text(draw: st.DrawFn, seeds: list[str]) -> str:
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate", "upper"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.text(ODD_CHARS, min_size=1, max_size=4)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.text(ODD_CHARS, min_size=1, max_size=2)) + text[j + 1:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif kind == "truncate":
            text = text[:i]
        else:
            text = text[:i] + text[i:j].upper() + text[j:]
    return text


@st.composite
def near_miss_bytes(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        j = draw(st.integers(i, min(len(data), i + 8)))
        kind = draw(st.sampled_from(["delete", "insert", "flip", "duplicate", "truncate"]))
        if kind == "delete":
            del data[i:j]
        elif kind == "insert":
            data[i:i] = draw(ODD_BYTES)
        elif kind == "flip" and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "duplicate":
            data[j:j] = data[i:j]
        else:
            del data[i:]
    return bytes(data)


def text_input(seeds: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.text(), near_miss_text(seeds), WRONG_TYPES)


def text_or_bytes_input(seeds: list[str]) -> st.SearchStrategy[Any]:
    encoded = [s.encode("utf-8") for s in seeds]
    return st.one_of(text_input(seeds), st.binary(), near_miss_bytes(encoded))


def header_lists(seeds: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(text_input(seeds), max_size=3), WRONG_TYPES, st.text(max_size=5))


HASHES = st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40), WRONG_TYPES)
COUNTS = st.one_of(st.integers(-3, 300), st.integers(-(2**70), 2**70), WRONG_TYPES)
LEVELS = st.one_of(st.integers(-1, 70), WRONG_TYPES)
BIG_COUNTS = st.one_of(st.integers(0, 10_000_000), st.integers(-(2**70), 2**70), WRONG_TYPES)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)


def _mutate_proof(draw: st.DrawFn, proof: list[bytes]) -> list[Any]:
    """Items flipped, dropped, added, swapped or replaced by a value of the wrong type."""
    items: list[Any] = list(proof)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "drop", "add", "swap", "odd"]))
        if kind == "add" or not items:
            items.insert(draw(st.integers(0, len(items))), draw(HASHES))
            continue
        k = draw(st.integers(0, len(items) - 1))
        if kind == "flip" and isinstance(items[k], bytes) and items[k]:
            flipped = bytearray(items[k])
            flipped[draw(st.integers(0, len(flipped) - 1))] ^= 1
            items[k] = bytes(flipped)
        elif kind == "drop":
            del items[k]
        elif kind == "swap":
            items[k], items[-1] = items[-1], items[k]
        else:
            items[k] = draw(WRONG_TYPES)
    return items


def _near(draw: st.DrawFn, value: Any, garbage: st.SearchStrategy[Any]) -> Any:
    """Usually `value` itself, sometimes a neighbour (for ints) or garbage."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(garbage)
    if choice == 1 and type(value) is int:
        return value + draw(st.sampled_from([-1, 1, value, -value, 2**63]))
    return value


@st.composite
def near_miss_inclusion(draw: st.DrawFn) -> tuple[Any, ...]:
    """(index, size, leaf hash, proof, root) of the synthetic tree, a few of them spoiled."""
    size = draw(st.integers(1, 10_000_000))
    index = draw(st.integers(0, size - 1))
    proof = proof_plan.inclusion_proof(index, size, _synthetic_node)
    return (_near(draw, index, BIG_COUNTS), _near(draw, size, BIG_COUNTS),
            _near(draw, _synthetic_node(tree.NodeID(0, index)), HASHES), _mutate_proof(draw, proof),
            _near(draw, _root(size), HASHES))


@st.composite
def near_miss_consistency(draw: st.DrawFn) -> tuple[Any, ...]:
    """(old size, new size, proof, old root, new root) of the synthetic tree, a few of them spoiled."""
    new = draw(st.integers(1, 10_000_000))
    old = draw(st.integers(0, new))
    proof = proof_plan.consistency_proof(old, new, _synthetic_node)
    return (_near(draw, old, BIG_COUNTS), _near(draw, new, BIG_COUNTS), _mutate_proof(draw, proof),
            _near(draw, _root(old), HASHES), _near(draw, _root(new), HASHES))


PROOFS = st.one_of(st.lists(HASHES, max_size=5), WRONG_TYPES, st.text(max_size=5))


@st.composite
def chain_items(draw: st.DrawFn) -> list[Any]:
    """The good log with entries mutated, dropped, duplicated, swapped, or given a recorded hash."""
    items: list[Any] = list(GOOD_LOG[: draw(st.integers(0, len(GOOD_LOG)))])
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["mutate", "drop", "duplicate", "swap", "recorded", "odd"]))
        if not items:
            items.append(draw(st.one_of(near_miss_bytes(ENTRIES), WRONG_TYPES)))
            continue
        k = draw(st.integers(0, len(items) - 1))
        if kind == "mutate":
            items[k] = draw(near_miss_bytes([items[k]] if isinstance(items[k], bytes) else ENTRIES))
        elif kind == "drop":
            del items[k]
        elif kind == "duplicate":
            items.insert(k, items[k])
        elif kind == "swap":
            items[k], items[-1] = items[-1], items[k]
        elif kind == "recorded":
            items[k] = (items[k], draw(HASHES))
        else:
            odd = st.one_of(WRONG_TYPES, st.tuples(WRONG_TYPES, WRONG_TYPES), st.tuples(st.binary(), st.binary()))
            items[k] = draw(odd)
    return items


@st.composite
def chain_heads(draw: st.DrawFn) -> chain.ChainHead | None:
    size = draw(st.integers(0, len(GOOD_LOG) + 2))
    if size == 0:
        return draw(st.sampled_from([None, chain.ChainHead(0, None)]))
    true_head = hashlib.sha256(GOOD_LOG[min(size, len(GOOD_LOG)) - 1]).digest()
    return chain.ChainHead(size, draw(st.one_of(st.just(true_head), st.binary(min_size=32, max_size=32))))


ENTRY_FIELDS = {
    "seq": COUNTS, "trace_id": text_input(["4bf92f3577b34da6a3ce929d0e0e4736"]), "run_seq": COUNTS,
    "step": st.one_of(st.text(max_size=210), WRONG_TYPES), "status": text_input(["started", "succeeded"]),
    "ts": text_input(TIMES), "received_at": text_input(TIMES), "source": text_input(["ci-runner"]),
    "prev": HASHES, "run_prev": HASHES, "attrs": st.one_of(JSONISH, WRONG_TYPES),
    "span_id": st.one_of(st.none(), text_input(["00f067aa0ba902b7"])),
    "parent_id": st.one_of(st.none(), text_input(["00f067aa0ba902b7"])),
    "final": st.one_of(st.booleans(), WRONG_TYPES), "version": st.one_of(st.just(1), WRONG_TYPES),
}
EVENT_FIELDS = {name: ENTRY_FIELDS[name] for name in
                ("trace_id", "step", "status", "ts", "source", "attrs", "span_id", "parent_id", "final")}


def _call_extend(events: list[sequencer.Event], received_at: Any) -> None:
    seq = sequencer.Sequencer(lambda trace_id: None)
    seq.extend(events, received_at)


@st.composite
def near_miss_bundle(draw: st.DrawFn) -> str | bytes:
    """The test bundle with one to three members deleted, replaced, duplicated or edited in place:
    still JSON, so the garbage reaches the checks past parsing."""
    bundle = json.loads(BUNDLE_BYTES)
    for _ in range(draw(st.integers(1, 3))):
        slots: list[tuple[Any, Any]] = []

        def walk(node: Any) -> None:
            keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
            for key in keys:
                slots.append((node, key))
                walk(node[key])

        walk(bundle)
        container, key = draw(st.sampled_from(slots))
        value = container[key]
        kind = draw(st.sampled_from(["delete", "replace", "duplicate", "edit"]))
        if kind == "delete":
            del container[key]
        elif kind == "duplicate" and isinstance(container, list):
            container.insert(key, value)
        elif kind == "edit" and isinstance(value, str) and value:
            container[key] = draw(near_miss_text([value]))
        elif kind == "edit" and type(value) is int:
            container[key] = value + draw(st.sampled_from([-1, 1, 2**64]))
        else:
            container[key] = draw(JSONISH)
    text = json.dumps(bundle, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else text


# ---- the catalogue: name -> (strategy of positional arguments, call) ------------------------------

TRACE_IDS = text_input(["4bf92f3577b34da6a3ce929d0e0e4736"])
SPAN_IDS = text_input(["00f067aa0ba902b7"])
NAMES = text_input([ORIGIN])
KEY_TEXT = text_input(KEY_STRINGS)
SIGNATURES = st.one_of(st.binary(min_size=64, max_size=64), st.binary(min_size=72, max_size=72), st.binary(),
                       WRONG_TYPES)
PAIRS = st.one_of(st.lists(st.one_of(st.tuples(text_input(["rojo"]), SPAN_IDS), WRONG_TYPES), max_size=3), WRONG_TYPES)
EVENTS = st.lists(st.fixed_dictionaries(EVENT_FIELDS).map(lambda fields: sequencer.Event(**fields)), max_size=3)
TILE_BYTES = st.one_of(st.binary(max_size=300), st.binary(min_size=8192, max_size=8224), WRONG_TYPES)
FULL_HASHES = st.lists(st.binary(min_size=32, max_size=32), max_size=20)
NEAR_TILE = st.just([b"\x00" * 32] * 255 + [b"short"])


def one(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(strategy)


Target = tuple[st.SearchStrategy[tuple[Any, ...]], Callable[..., Any]]
TARGETS: dict[str, Target] = {
    # trace context
    "TraceParent.from_header": (one(text_input(TRACEPARENTS)), tracecontext.TraceParent.from_header),
    "TraceParent": (st.tuples(COUNTS, TRACE_IDS, SPAN_IDS, COUNTS), tracecontext.TraceParent),
    "parse_traceparent_headers": (one(header_lists(TRACEPARENTS)), tracecontext.parse_traceparent_headers),
    "parse_tracestate": (one(header_lists(TRACESTATES)), tracecontext.parse_tracestate),
    "format_tracestate": (one(PAIRS), tracecontext.format_tracestate),
    "trace_id_from_xray": (one(text_input(XRAY)), tracecontext.trace_id_from_xray),
    "xray_parent_id": (one(text_input(XRAY)), tracecontext.xray_parent_id),
    "new_traceparent": (st.tuples(st.one_of(st.none(), TRACE_IDS), st.one_of(st.binary(max_size=20), WRONG_TYPES)),
                        lambda trace_id, raw: tracecontext.new_traceparent(trace_id, lambda n: raw)),
    # timestamps
    "check_utc": (one(text_input(TIMES)), timefmt.check_utc),
    "parse_utc": (one(text_input(TIMES)), timefmt.parse_utc),
    "normalize_rfc3339": (one(text_input(TIMES)), timefmt.normalize_rfc3339),
    "format_utc": (st.tuples(st.one_of(st.datetimes(timezones=st.just(timezone.utc)), st.datetimes(), WRONG_TYPES),
                             COUNTS), timefmt.format_utc),
    # entries and chains
    "decode_entry": (one(st.one_of(st.binary(), near_miss_bytes(ENTRIES), WRONG_TYPES, st.text(max_size=5))),
                     entry.decode_entry),
    "encode_entry": (st.fixed_dictionaries(ENTRY_FIELDS).map(lambda fields: (entry.Entry(**fields),)),
                     entry.encode_entry),
    "Sequencer.extend": (st.tuples(EVENTS, text_input(TIMES)), _call_extend),
    "ChainHead": (st.tuples(COUNTS, HASHES), chain.ChainHead),
    "verify_global_chain": (st.tuples(chain_items(), chain_heads(), chain_heads()),
                            lambda items, start, head: chain.verify_global_chain(
                                items, start=start, expected_head=head, runs=chain.RunChains())),
    "verify_run_chain": (st.tuples(chain_items(), st.one_of(st.none(), TRACE_IDS)),
                         lambda items, trace_id: chain.verify_run_chain(items, trace_id=trace_id)),
    # keys and signed notes
    "KeyID.from_hex": (one(text_input(["c74f20a3"])), keys.KeyID.from_hex),
    "KeyID.from_bytes": (one(st.one_of(st.binary(max_size=8), WRONG_TYPES)), keys.KeyID.from_bytes),
    "b64decode_strict": (one(text_input([KEY_STRINGS[1].split("+")[2]])),
                         lambda text: keys.b64decode_strict(text, what="key")),
    "check_key_name": (one(NAMES), keys.check_key_name),
    "check_key_length": (one(st.one_of(HASHES, st.text(max_size=40))), lambda key: keys.check_key_length(key, "key")),
    "split_verifier_key": (one(KEY_TEXT), keys.split_verifier_key),
    "split_signer_key": (one(KEY_TEXT), keys.split_signer_key),
    "key_type_of": (one(KEY_TEXT), keys.key_type_of),
    "NoteVerifier.from_text": (one(KEY_TEXT), keys.NoteVerifier.from_text),
    "NoteVerifier": (st.tuples(NAMES, HASHES), keys.NoteVerifier),
    "NoteVerifier.verify": (st.tuples(st.one_of(st.binary(), WRONG_TYPES), SIGNATURES), LOG_VERIFIER.verify),
    "NoteSigner.from_text": (one(KEY_TEXT), keys.NoteSigner.from_text),
    "NoteSigner.from_seed": (st.tuples(NAMES, HASHES), keys.NoteSigner.from_seed),
    "generate_signer": (st.tuples(NAMES, st.one_of(st.none(), HASHES)), keys.generate_signer),
    "sign_note": (one(text_or_bytes_input(["a note\n"])), lambda text: note.sign_note(text, [LOG_SIGNER])),
    "open_note": (one(text_or_bytes_input([SIGNED_CHECKPOINT.decode(), SIGNED_RECEIPT])),
                  lambda message: note.open_note(message, [LOG_VERIFIER, CLOCK_VERIFIER])),
    # cosignatures, checkpoints, receipts
    "CosignatureVerifier.from_text": (one(KEY_TEXT), cosignature.CosignatureVerifier.from_text),
    "CosignatureVerifier": (st.tuples(NAMES, HASHES), cosignature.CosignatureVerifier),
    "CosignatureVerifier.verify": (st.tuples(st.one_of(st.binary(), WRONG_TYPES), SIGNATURES), CLOCK_VERIFIER.verify),
    "CosignatureSigner.from_text": (one(KEY_TEXT), cosignature.CosignatureSigner.from_text),
    "CosignatureSigner.from_seed": (st.tuples(NAMES, HASHES), cosignature.CosignatureSigner.from_seed),
    "CosignatureSigner.at": (one(COUNTS), COSIGNER.at),
    "generate_cosigner": (st.tuples(NAMES, st.one_of(st.none(), HASHES)), cosignature.generate_cosigner),
    "timestamp_of": (one(SIGNATURES), cosignature.timestamp_of),
    "check_timestamp": (one(COUNTS), cosignature.check_timestamp),
    "cosigned_message": (st.tuples(st.binary(max_size=10), COUNTS), cosignature.cosigned_message),
    "Checkpoint.from_text": (one(text_or_bytes_input([CHECKPOINT.to_text(), CHECKPOINT.to_text() + "ext\n"])),
                             checkpoint.Checkpoint.from_text),
    "Checkpoint": (st.tuples(NAMES, COUNTS, HASHES, st.one_of(st.lists(text_input(["ext"]), max_size=2), WRONG_TYPES)),
                   checkpoint.Checkpoint),
    "open_checkpoint": (st.tuples(text_or_bytes_input([SIGNED_CHECKPOINT.decode()]), NAMES),
                        lambda message, origin: checkpoint.open_checkpoint(
                            message, LOG_VERIFIER, origin=origin, cosigner_verifiers=[CLOCK_VERIFIER])),
    "sign_checkpoint": (one(COUNTS), lambda when: checkpoint.sign_checkpoint(CHECKPOINT, LOG_SIGNER, [COSIGNER], when)),
    "Receipt.from_text": (one(text_or_bytes_input([RECEIPT.to_text()])), receipt.Receipt.from_text),
    "Receipt": (st.tuples(NAMES, COUNTS, COUNTS, text_input(TIMES), HASHES), receipt.Receipt),
    "Receipt.for_entries": (st.tuples(NAMES, COUNTS, text_input(TIMES), st.lists(HASHES, max_size=3)),
                            receipt.Receipt.for_entries),
    "Receipt.check_covers": (st.tuples(COUNTS, st.one_of(st.lists(HASHES, max_size=4), WRONG_TYPES)),
                             RECEIPT.check_covers),
    "digest_of": (one(st.one_of(st.lists(HASHES, max_size=3), WRONG_TYPES)), receipt.digest_of),
    "check_origin": (one(NAMES), receipt.check_origin),
    "open_receipt": (st.tuples(text_or_bytes_input([SIGNED_RECEIPT]), NAMES),
                     lambda message, origin: receipt.open_receipt(message, LOG_VERIFIER, origin=origin)),
    # Merkle tree, proofs, tiles
    "NodeID": (st.tuples(COUNTS, COUNTS), tree.NodeID),
    "perfect_subtrees": (st.tuples(COUNTS, COUNTS), tree.perfect_subtrees),
    "largest_power_of_two_below": (one(COUNTS), tree.largest_power_of_two_below),
    "root_from_leaf_hashes": (one(st.lists(HASHES, max_size=5)), tree.root_from_leaf_hashes),
    "CompactRange.from_peaks": (st.tuples(COUNTS, st.one_of(st.lists(HASHES, max_size=5), FULL_HASHES)),
                                compact.CompactRange.from_peaks),
    "CompactRange.append": (one(HASHES), lambda leaf: compact.CompactRange().append(leaf)),
    "plan_inclusion": (st.tuples(BIG_COUNTS, BIG_COUNTS), proof_plan.plan_inclusion),
    "plan_consistency": (st.tuples(BIG_COUNTS, BIG_COUNTS), proof_plan.plan_consistency),
    "inclusion_proof": (st.tuples(BIG_COUNTS, BIG_COUNTS),
                        lambda index, size: proof_plan.inclusion_proof(index, size, _synthetic_node)),
    "consistency_proof": (st.tuples(BIG_COUNTS, BIG_COUNTS),
                          lambda old, new: proof_plan.consistency_proof(old, new, _synthetic_node)),
    "ProofPlan.assemble": (st.tuples(st.integers(1, 300), st.lists(HASHES, max_size=12)),
                           lambda size, hashes: proof_plan.plan_inclusion(0, size).assemble(hashes)),
    "verify_inclusion": (st.one_of(near_miss_inclusion(), st.tuples(BIG_COUNTS, BIG_COUNTS, HASHES, PROOFS, HASHES)),
                         proof_verify.verify_inclusion),
    "root_from_inclusion_proof": (st.one_of(near_miss_inclusion().map(lambda args: args[:4]),
                                            st.tuples(BIG_COUNTS, BIG_COUNTS, HASHES, PROOFS)),
                                  proof_verify.root_from_inclusion_proof),
    "verify_consistency": (st.one_of(near_miss_consistency(),
                                     st.tuples(BIG_COUNTS, BIG_COUNTS, PROOFS, HASHES, HASHES)),
                           proof_verify.verify_consistency),
    "TileID.from_path": (one(text_input(TILE_PATHS)), tiles.TileID.from_path),
    "TileID": (st.tuples(COUNTS, COUNTS, COUNTS), tiles.TileID),
    "tile_hashes_from_bytes": (one(TILE_BYTES), tiles.tile_hashes_from_bytes),
    "encode_tile_index": (one(COUNTS), tiles.encode_tile_index),
    "tiles_for_size": (one(st.one_of(st.integers(-3, 70_000), WRONG_TYPES)), tiles.tiles_for_size),
    # NodeID levels stay small: (index + 1) << level with a level of 2**40 would allocate terabytes.
    "tile_for_node": (st.tuples(LEVELS, COUNTS, BIG_COUNTS),
                      lambda level, index, size: tiles.tile_for_node(tree.NodeID(level, index), size)),
    "node_from_tile": (st.tuples(FULL_HASHES, LEVELS, COUNTS),
                       lambda hashes, level, index: tiles.node_from_tile(hashes, tree.NodeID(level, index))),
    "tile_root": (one(st.one_of(st.lists(HASHES, max_size=3), NEAR_TILE)), tiles.tile_root),
    # evidence bundles, tlog-proof, tlog-policy, CSV exports (seeds from tests/core/test_bundle.py)
    "verify_bundle": (one(st.one_of(text_or_bytes_input([_BUNDLE_TEXT]), near_miss_bundle())),
                      lambda data: bundle_verify.verify_bundle(data, key=_BUNDLE_KEY)),
    "TlogProof.from_text": (one(text_input([_TLOG_PROOF])), tlog_proof.TlogProof.from_text),
    "Policy.from_text": (one(text_input([f"log {LOG_VERIFIER.to_text()}\nwitness c {CLOCK_VERIFIER.to_text()}\n"
                                         "group g any c\nquorum g\n",
                                         f"log {LOG_VERIFIER.to_text()} 2026-01-01T00:00:00Z -\n"
                                         f"clock {CLOCK_VERIFIER.to_text()} 2026-01-01T00:00:00Z -\nquorum none\n"])),
                         policy.Policy.from_text),
    # keys with validity windows (seed: a keys file as `runlog keys show` prints it)
    "TrustedKeys.from_text": (one(text_input([_KEYS_FILE])), key_history.TrustedKeys.from_text),
    "parse_seconds": (one(text_input(["2026-11-28T00:00:00Z"])), key_history.parse_seconds),
    "open_trusted_checkpoint": (st.tuples(text_or_bytes_input([SIGNED_CHECKPOINT.decode()]), NAMES),
                                lambda message, origin: key_history.open_trusted_checkpoint(
                                    message, key_history.TrustedKeys.from_text(_KEYS_FILE), origin=origin)),
    "verify_csv": (st.tuples(st.one_of(st.just(_CSV), near_miss_bytes([_CSV]), st.binary(max_size=50), WRONG_TYPES),
                             st.one_of(st.just(_CSV_NOTE), text_or_bytes_input([_CSV_NOTE, SIGNED_RECEIPT]))),
                   lambda data, note_text: csv_export.verify_csv(data, note_text, LOG_VERIFIER)),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=examples(60))  # python -m reliability.fuzz runs many more
@given(data=st.data())
def test_only_the_error_family_escapes(name: str, data: st.DataObject) -> None:
    strategy, call = TARGETS[name]
    arguments = data.draw(strategy, label="arguments")
    try:
        call(*arguments)
    except RunlogError:
        pass
    except Exception as error:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{name} leaked {type(error).__name__}: {error}") from error


# ---- regressions: leaks this module found, fixed in the core ------------------------------------

_RECEIPT_LINES = RECEIPT.to_text().split("\n")
REGRESSIONS: dict[str, Callable[[], Any]] = {
    # base64.b64decode raises a plain ValueError (not binascii.Error) for non-ASCII text
    "receipt-digest-not-ascii": lambda: receipt.Receipt.from_text(
        "\n".join(_RECEIPT_LINES[:5] + ["\u00e9" * 44, ""])),
    "receipt-body-as-bytes": lambda: receipt.Receipt.from_text(RECEIPT.to_text().encode()),
    "receipt-digest-of-none": lambda: receipt.digest_of(None),
    "receipt-covers-seq-as-text": lambda: RECEIPT.check_covers("41", [bytes(32)] * 2),
    "cosignature-timestamp-of-none": lambda: cosignature.timestamp_of(None),
    "cosignature-text-none": lambda: CLOCK_VERIFIER.verify(None, bytes(72)),
    "note-signature-none": lambda: LOG_VERIFIER.verify(b"text\n", None),
    "key-id-from-int": lambda: keys.KeyID.from_bytes(4),  # bytes(4) used to give key ID 00000000
    "sign-note-lone-surrogate": lambda: note.sign_note("\ud800 note\n", [LOG_SIGNER]),
    "run-chain-trace-id-list": lambda: chain.verify_run_chain([], trace_id=[]),
    "checkpoint-extensions-none": lambda: checkpoint.Checkpoint(ORIGIN, 0, bytes(32), None),  # type: ignore[arg-type]
    "csv-data-none": lambda: csv_export.verify_csv(None, _CSV_NOTE, _BUNDLE_KEY),  # type: ignore[arg-type]
    "sequencer-trace-id-list": lambda: _call_extend(
        [sequencer.Event([], "step", "info", TIMES[0], "src")], TIMES[0]),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regressions_raise_in_the_family(name: str) -> None:
    with pytest.raises(RunlogError):
        REGRESSIONS[name]()


# ---- the catalogue covers the code ------------------------------------------------------------------

_PARSER_PREFIXES = ("from_", "parse_", "verify", "open_", "decode_", "split_", "check_", "normalize_")


def _public_parsers() -> set[str]:
    names = set()
    for info in pkgutil.iter_modules(appliance.core.__path__):
        module = importlib.import_module(f"appliance.core.{info.name}")
        for attr, value in vars(module).items():
            if attr.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value) and attr.startswith(_PARSER_PREFIXES):
                names.add(attr)
            elif inspect.isclass(value) and not getattr(value, "_is_protocol", False):
                names.update(f"{attr}.{method}" for method in vars(value) if method.startswith(_PARSER_PREFIXES))
    return names


def test_every_public_parser_is_covered() -> None:
    """A new `from_*`/`parse_*`/`verify*`/`open_*`/`decode_*` in appliance.core needs a target here."""
    assert _public_parsers() - set(TARGETS) == set()


def test_the_near_miss_seeds_are_valid() -> None:
    """Mutations start from inputs that pass, so the garbage reaches the deep checks."""
    for data in ENTRIES:
        entry.decode_entry(data)
    chain.verify_global_chain(GOOD_LOG, runs=chain.RunChains())
    size, index = 10_000_000, 1_234_567
    proof_verify.verify_inclusion(index, size, _synthetic_node(tree.NodeID(0, index)),
                                  proof_plan.inclusion_proof(index, size, _synthetic_node), _root(size))
    proof_verify.verify_consistency(index, size, proof_plan.consistency_proof(index, size, _synthetic_node),
                                    _root(index), _root(size))
    checkpoint.open_checkpoint(SIGNED_CHECKPOINT, LOG_VERIFIER, origin=ORIGIN, cosigner_verifiers=[CLOCK_VERIFIER])
    key_history.open_trusted_checkpoint(SIGNED_CHECKPOINT, key_history.TrustedKeys.from_text(_KEYS_FILE), origin=ORIGIN)
    assert receipt.open_receipt(SIGNED_RECEIPT, LOG_VERIFIER, origin=ORIGIN) == RECEIPT
    for header in TRACEPARENTS:
        tracecontext.TraceParent.from_header(header)
    for path in TILE_PATHS:
        tiles.TileID.from_path(path)
    for text in KEY_STRINGS:
        keys.split_verifier_key(text.removeprefix("PRIVATE+KEY+"))

"""Verify a JSON evidence bundle offline (docs/FORMAT.md, "Evidence bundles").

Order: the checkpoint's signatures (log key, clock cosigner, policy witnesses), then every entry's
bytes, its tlog-proof and inclusion proof, the daily roots' signatures and consistency proofs,
the run's own chain, and last the file signature. The first failure raises `BundleError` (or an
`InvalidInput` for a file that is not a bundle at all); nothing else escapes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from appliance.core.bundle import BUNDLE_FORMAT, bundle_digest, signature_text
from appliance.core.chain import RunChains
from appliance.core.checkpoint import SignedCheckpoint, open_checkpoint
from appliance.core.cosignature import CosignatureVerifier
from appliance.core.entry import decode_entry, entry_hash
from appliance.core.errors import ChainError, InvalidInput, RunlogError, VerificationError
from appliance.core.hashing import leaf_hash
from appliance.core.keys import NoteVerifier
from appliance.core.note import open_note
from appliance.core.policy import Policy
from appliance.core.proof_verify import verify_consistency, verify_inclusion
from appliance.core.tlog_proof import TlogProof

MAX_BUNDLE_BYTES = 1 << 30


class BundleFormatError(InvalidInput):
    """The file is not a well-formed evidence bundle."""


class BundleError(VerificationError):
    """The bundle is well formed but some evidence in it does not hold."""


@dataclass(frozen=True)
class BundleReport:
    """What a verified bundle proves."""

    origin: str
    log_key: str
    trace_id: str
    count: int
    seqs: tuple[int, int]
    closed: bool
    tree_size: int
    root: bytes
    signed_at: int | None
    witnesses: tuple[str, ...]
    daily_roots: tuple[tuple[str, int], ...]
    anchors: tuple[dict, ...]
    not_proven: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"ok": True, "origin": self.origin, "log_key": self.log_key, "trace_id": self.trace_id,
                "entries": self.count, "first_seq": self.seqs[0], "last_seq": self.seqs[1],
                "run": "closed" if self.closed else "open", "tree_size": self.tree_size,
                "root": base64.b64encode(self.root).decode("ascii"), "signed_at": self.signed_at,
                "witnesses": list(self.witnesses),
                "daily_roots": [{"day": d, "size": s} for d, s in self.daily_roots],
                "anchors": list(self.anchors), "not_proven": list(self.not_proven)}


def _get(obj: Any, key: str, kind: type, where: str = "bundle") -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise BundleFormatError(f"{where} has no {key!r} member", field=key)
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BundleFormatError(f"{where}.{key} must be a {kind.__name__}", field=key)
    return value


def _parse(data: bytes | str) -> dict:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError("a bundle is a JSON file of at most 1 GiB", field="bundle")
    try:
        bundle = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleFormatError("the file is not UTF-8 JSON (truncated or not an evidence bundle?)",
                                field="bundle") from None
    if not isinstance(bundle, dict):
        raise BundleFormatError("the file is not a JSON object", field="bundle")
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BundleFormatError(f"the file is not a {BUNDLE_FORMAT} bundle", field="format")
    return bundle


def _open_checkpoint(note: str, log: NoteVerifier, cosigners: list[CosignatureVerifier], what: str) -> SignedCheckpoint:
    try:
        return open_checkpoint(note, log, origin=log.name, cosigner_verifiers=cosigners)
    except VerificationError as error:
        raise BundleError(f"{what}: {error}") from None
    except InvalidInput as error:
        raise BundleFormatError(f"{what}: {error}", field="checkpoint") from None


def verify_bundle(data: bytes | str, *, key: NoteVerifier | None = None, policy: Policy | None = None) -> BundleReport:
    """Verify a bundle file against the log key (`key`, or the policy's log key and quorum).

    Raises `BundleFormatError` for a file that is not a bundle, `BundleError` for evidence that does
    not hold; returns the report only when everything holds."""
    try:
        return _verify(data, key, policy)
    except RunlogError:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError) as error:  # pragma: no cover
        raise BundleFormatError(f"malformed bundle: {error}") from None


def _verify(data: bytes | str, key: NoteVerifier | None, policy: Policy | None) -> BundleReport:
    if (key is None) == (policy is None):
        raise InvalidInput("give exactly one of a log key and a policy", field="key")
    log = policy.log if policy is not None else key
    bundle = _parse(data)
    trace_id = _get(bundle, "trace_id", str)
    keys = _get(bundle, "keys", dict)
    clock_text = keys.get("clock")
    cosigners: list[CosignatureVerifier] = []
    clock = None
    if clock_text is not None:
        try:
            clock = CosignatureVerifier.from_text(clock_text)
        except InvalidInput as error:
            raise BundleFormatError(f"keys.clock: {error}", field="clock") from None
        cosigners.append(clock)
    witness_names = {}
    if policy is not None:
        for name, witness in policy.witnesses.items():
            if clock is None or (witness.name, witness.key_id) != (clock.name, clock.key_id):
                cosigners.append(witness)
            witness_names[(witness.name, witness.key_id)] = name

    # 1. Signatures on the checkpoint.
    note = _get(bundle, "checkpoint", str)
    signed = _open_checkpoint(note, log, cosigners, "checkpoint")
    size, root = signed.checkpoint.size, signed.checkpoint.root_hash
    cosigned = {witness_names[(c.name, c.key_id)] for c in signed.cosignatures if (c.name, c.key_id) in witness_names}
    if policy is not None and not policy.satisfied(cosigned):
        raise BundleError(f"checkpoint: witness quorum {policy.quorum!r} not met (cosigned by: "
                          f"{', '.join(sorted(cosigned)) or 'none of the policy witnesses'})")
    signed_at = next((c.timestamp for c in signed.cosignatures if clock and c.key_id == clock.key_id), None)

    # 2. Entries and their inclusion proofs; 4. the run's chain as they go by.
    items = _get(bundle, "entries", list)
    if not items:
        raise BundleFormatError("the bundle holds no entries", field="entries")
    chains = RunChains()
    seqs = []
    for number, item in enumerate(items):
        where = f"entries[{number}]"
        text = _get(item, "entry", str, where)
        raw = text.encode("utf-8", "surrogatepass")
        try:
            entry = decode_entry(raw)
        except InvalidInput as error:
            raise BundleError(f"{where}: the entry bytes were altered or are not a valid entry: {error}") from None
        if entry.trace_id != trace_id:
            raise BundleError(f"{where} (seq {entry.seq}): belongs to trace {entry.trace_id}, not {trace_id}: "
                              "an entry of another run was inserted")
        try:
            proof = TlogProof.from_text(_get(item, "proof", str, where))
        except InvalidInput as error:
            raise BundleFormatError(f"{where}: {error}", field="proof") from None
        if proof.checkpoint != note:
            raise BundleError(f"{where} (seq {entry.seq}): its tlog-proof names another checkpoint than the bundle's")
        if proof.index != entry.seq:
            raise BundleError(f"{where}: its tlog-proof is for index {proof.index}, the entry says seq {entry.seq}")
        try:
            verify_inclusion(entry.seq, size, leaf_hash(raw), list(proof.hashes), root)
        except VerificationError as error:
            raise BundleError(f"{where} (seq {entry.seq}): the entry is not in the signed tree: {error}") from None
        try:
            chains.add(entry, entry_hash(raw))
        except ChainError as error:
            raise BundleError(f"{where} (seq {entry.seq}): the run's chain is broken ({error.reason}): {error}") from None
        seqs.append(entry.seq)
    state = chains.state(trace_id)
    assert state is not None

    # 3. Daily roots: signed by the log and extended by the checkpoint.
    daily = []
    for number, item in enumerate(_get(bundle, "daily_roots", list)):
        where = f"daily_roots[{number}]"
        day = _get(item, "day", str, where)
        old = _open_checkpoint(_get(item, "checkpoint", str, where), log, cosigners, f"{where} ({day})").checkpoint
        hashes = []
        for text in _get(item, "consistency", list, where):
            try:
                hashes.append(base64.b64decode(text, validate=True) if isinstance(text, str) else None)
            except (binascii.Error, ValueError):
                raise BundleFormatError(f"{where}: a consistency hash is not base64", field="consistency") from None
        try:
            verify_consistency(old.size, size, hashes, old.root_hash, root)
        except VerificationError as error:
            raise BundleError(f"{where} ({day}, size {old.size}): the checkpoint does not extend it: {error}") from None
        daily.append((day, old.size))

    # 5. The file signature over everything else.
    if "signature" not in bundle:
        raise BundleError("the file signature is missing: the bundle's contents are not bound together")
    signature = _get(bundle, "signature", str)
    try:
        text = open_note(signature, [log]).text
    except VerificationError as error:
        raise BundleError(f"file signature: {error}") from None
    except InvalidInput as error:
        raise BundleFormatError(f"file signature: {error}", field="signature") from None
    if text != signature_text(log.name, trace_id, bundle_digest(bundle)):
        raise BundleError("file signature: it signs other contents (the file was edited after it was signed)")

    anchors = tuple({"anchor": a.get("anchor"), "size": a.get("size"), "location": a.get("location")}
                    for a in _get(bundle, "anchors", list) if isinstance(a, dict))
    not_proven = ["anchors were not consulted offline: compare the checkpoint with the copies the anchors hold"]
    if not state.closed:
        not_proven.append("the run is open: entries appended after this checkpoint, if any, are not covered")
    if signed_at is None:
        not_proven.append("the checkpoint time: no clock cosignature was verified")
    if policy is None:
        not_proven.append("witnesses: no policy was given, so only the log's own key vouches for the checkpoint")
    return BundleReport(log.name, log.to_text(), trace_id, len(items), (seqs[0], seqs[-1]), state.closed, size, root,
                        signed_at, tuple(sorted(cosigned)), tuple(daily), anchors, tuple(not_proven))

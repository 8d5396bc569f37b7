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
from typing import Any, Callable

from appliance.core.bundle import BUNDLE_FORMAT, bundle_digest, signature_text, signed_bytes_digest
from appliance.core.bundle_entries import (
    BundleError,
    BundleFormatError,
    EntriesContext,
    Failure,
    Link,
    examine_entries,
    follow_run_chain,
)
from appliance.core.cosignature import CosignatureVerifier
from appliance.core.errors import InvalidInput, RunlogError, VerificationError
from appliance.core.key_history import (
    KeyWindow,
    TrustedCheckpoint,
    TrustedKeys,
    format_seconds,
    open_trusted_checkpoint,
)
from appliance.core.keys import NoteVerifier
from appliance.core.note import open_note
from appliance.core.policy import Policy
from appliance.core.proof_verify import verify_consistency

__all__ = ["BundleError", "BundleFormatError", "BundleReport", "Split", "verify_bundle"]

MAX_BUNDLE_BYTES = 1 << 30

# A way to run examine_entries over all the entries (context, count) -> what examine_entries(context, 0, count)
# returns: in slices elsewhere, for example (appliance.verify splits them over worker processes).
Split = Callable[[Callable[[EntriesContext, int, int], tuple[list[Link], Failure | None]], EntriesContext, int],
                 tuple[list[Link], Failure | None]]


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


def _parse(data: bytes) -> dict:
    if not isinstance(data, bytes) or len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError("a bundle is a JSON file of at most 1 GiB", field="bundle")
    try:
        bundle = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleFormatError("the file is not UTF-8 JSON (truncated or not an evidence bundle?)",
                                field="bundle") from None
    if not isinstance(bundle, dict):
        raise BundleFormatError("the file is not a JSON object", field="bundle")
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BundleFormatError(f"the file is not a {BUNDLE_FORMAT} bundle", field="format")
    return bundle


def _open_checkpoint(note: str, trusted: TrustedKeys, witnesses: list[CosignatureVerifier],
                     what: str) -> TrustedCheckpoint:
    try:
        return open_trusted_checkpoint(note, trusted, origin=trusted.origin, witnesses=witnesses)
    except VerificationError as error:
        raise BundleError(f"{what}: {error}") from None
    except InvalidInput as error:
        raise BundleFormatError(f"{what}: {error}", field="checkpoint") from None


def _check_file_signer(verified: tuple, trusted: TrustedKeys, signed_at: int | None) -> None:
    """The file is exported after its checkpoint was cut, so a key retired before that time cannot
    have signed it (the file signature carries no time of its own)."""
    windows = {(w.verifier.name, w.verifier.key_id): w for w in trusted.log}
    signers = [windows[(s.name, s.key_id)] for s in verified if (s.name, s.key_id) in windows]
    if signed_at is not None and not any(w.valid_until is None or w.valid_until >= signed_at for w in signers):
        first = signers[0]
        raise BundleError(f"file signature: signed by log key {first.label}, retired at "
                          f"{format_seconds(first.valid_until)}, before the checkpoint it covers was cut at "  # type: ignore[arg-type]
                          f"{format_seconds(signed_at)}")


def verify_bundle(data: bytes | str, *, key: NoteVerifier | None = None, policy: Policy | None = None,
                  keys: TrustedKeys | None = None, split: Split | None = None) -> BundleReport:
    """Verify a bundle file against exactly one of: the log key (`key`, trusted at any time), the
    log's published keys with their validity windows (`keys`), or a policy (its log keys and quorum).

    Raises `BundleFormatError` for a file that is not a bundle, `BundleError` for evidence that does
    not hold (`KeyWindowError`s included, as a `BundleError` naming the key and its window); returns
    the report only when everything holds. `split`, if given, checks the entries in its own way
    (it must return what `examine_entries` over all of them would)."""
    try:
        return _verify(data, key, policy, keys, split)
    except RunlogError:
        raise
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError) as error:  # pragma: no cover
        raise BundleFormatError(f"malformed bundle: {error}") from None


def _trusted(key: NoteVerifier | None, policy: Policy | None, keys: TrustedKeys | None,
             clock_text: object) -> TrustedKeys:
    """The keys to trust. Clock keys come from the keys file or policy; when it names none, the
    bundle's own clock key is trusted (at any time), vouched for by the file signature."""
    trusted = keys if keys is not None else policy.keys if policy is not None else TrustedKeys.unbounded(key)  # type: ignore[arg-type]
    if clock_text is None or trusted.clock:
        return trusted
    try:
        clock = CosignatureVerifier.from_text(clock_text)  # type: ignore[arg-type]
    except InvalidInput as error:
        raise BundleFormatError(f"keys.clock: {error}", field="clock") from None
    return TrustedKeys(trusted.log, (KeyWindow(clock),))


def _verify(data: bytes | str, key: NoteVerifier | None, policy: Policy | None,
            keys: TrustedKeys | None, split: Split | None) -> BundleReport:
    if sum(x is not None for x in (key, policy, keys)) != 1:  # before reading the file
        raise InvalidInput("give exactly one of a log key, a keys file and a policy", field="key")
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, bytearray):
        data = bytes(data)
    bundle = _parse(data)
    trace_id = _get(bundle, "trace_id", str)
    trusted = _trusted(key, policy, keys, _get(bundle, "keys", dict).get("clock"))
    witnesses = list(policy.witnesses.values()) if policy is not None else []
    witness_names = {(w.name, w.key_id): name for name, w in (policy.witnesses.items() if policy else ())}

    # 1. Signatures on the checkpoint, by a log key valid at its time.
    note = _get(bundle, "checkpoint", str)
    signed = _open_checkpoint(note, trusted, witnesses, "checkpoint")
    size, root = signed.checkpoint.size, signed.checkpoint.root_hash
    cosigned = {witness_names[(c.name, c.key_id)] for c in signed.cosignatures if (c.name, c.key_id) in witness_names}
    if policy is not None and not policy.satisfied(cosigned):
        raise BundleError(f"checkpoint: witness quorum {policy.quorum!r} not met (cosigned by: "
                          f"{', '.join(sorted(cosigned)) or 'none of the policy witnesses'})")
    signed_at = signed.signed_at

    # 2. Entries and their inclusion proofs; 4. the run's chain through them.
    items = _get(bundle, "entries", list)
    if not items:
        raise BundleFormatError("the bundle holds no entries", field="entries")
    context = EntriesContext(items, trace_id, note, size, root)
    links, failure = (examine_entries(context, 0, len(items)) if split is None
                      else split(examine_entries, context, len(items)))
    state = follow_run_chain(links, failure).state(trace_id)
    assert state is not None
    seqs = (links[0].seq, links[-1].seq)

    # 3. Daily roots: signed by the log and extended by the checkpoint.
    daily = []
    for number, item in enumerate(_get(bundle, "daily_roots", list)):
        where = f"daily_roots[{number}]"
        day = _get(item, "day", str, where)
        old = _open_checkpoint(_get(item, "checkpoint", str, where), trusted, witnesses, f"{where} ({day})").checkpoint
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
        signed_file = open_note(signature, [w.verifier for w in trusted.log])
    except VerificationError as error:
        raise BundleError(f"file signature: {error}") from None
    except InvalidInput as error:
        raise BundleFormatError(f"file signature: {error}", field="signature") from None
    _check_file_signer(signed_file.verified, trusted, signed_at)
    # The file's own bytes first (one SHA-256 pass); if they are not what was signed, the bundle's
    # RFC 8785 form decides (a file re-encoded another way still verifies).
    raw_digest = signed_bytes_digest(data, signature)
    if raw_digest is None or signed_file.text != signature_text(trusted.origin, trace_id, raw_digest):
        if signed_file.text != signature_text(trusted.origin, trace_id, bundle_digest(bundle)):
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
    log = signed.log_keys[0].verifier
    return BundleReport(log.name, log.to_text(), trace_id, len(items), seqs, state.closed, size, root,
                        signed_at, tuple(sorted(cosigned)), tuple(daily), anchors, tuple(not_proven))

"""JSON evidence bundles for one run (docs/FORMAT.md, "Evidence bundles"): building them.

A bundle is one JSON object: the run's entries as their canonical text, a C2SP tlog-proof per
entry against one signed checkpoint, consistency proofs from the daily roots covering the run to
that checkpoint, the verifier keys, where the checkpoints are anchored, and a file signature: a
signed note by the log key whose text names the format, origin and trace and carries the SHA-256
of the RFC 8785 form of the bundle without its `signature` member. Building does no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import rfc8785

from appliance.core.entry import is_plain_json, plain_json_text
from appliance.core.errors import InvalidInput
from appliance.core.hashing import sha256
from appliance.core.keys import NoteSigner
from appliance.core.note import sign_note
from appliance.core.tlog_proof import proof_heads

BUNDLE_FORMAT = "runlog-evidence/v1"
SIGNATURE_HEADER = "runlog-evidence-signature/v1"


@dataclass(frozen=True)
class ExportedEntry:
    """One entry of the run: its canonical bytes and its inclusion proof in the checkpoint's tree."""

    seq: int
    data: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class DailyRootProof:
    """A daily root (its signed note) and the consistency proof from its tree to the checkpoint's."""

    day: str
    size: int
    checkpoint: str
    consistency: tuple[bytes, ...]


@dataclass(frozen=True)
class AnchorLocation:
    """Where an anchor says it holds the checkpoint of `size` (as the anchor reported it)."""

    anchor: str
    size: int
    location: str


def canonical_json(value: object) -> bytes:
    """RFC 8785 bytes of `value` (a fast path for the common case; `rfc8785` otherwise).

    Raises `InvalidInput` for values RFC 8785 cannot represent (lone surrogates, huge integers, NaN)."""
    try:
        if is_plain_json(value):
            return plain_json_text(value).encode("utf-8")
        return rfc8785.dumps(value)
    except (ValueError, TypeError, RecursionError) as error:  # UnicodeEncodeError, CanonicalizationError
        raise InvalidInput(f"not representable in RFC 8785 JSON: {error}", field="bundle") from None


def bundle_digest(bundle: dict) -> bytes:
    """SHA-256 of the RFC 8785 form of `bundle` without its `signature` member.

    Precondition: `bundle` is a JSON object (as parsed from a file, or as built here). The
    `entries` member, nearly all of a file, is hashed piece by piece from its strings' UTF-8 when
    `_entries_pieces` can (the other members, and any other bundle, go through `canonical_json`)."""
    unsigned = {key: value for key, value in bundle.items() if key != "signature"}
    if type(unsigned.get("entries")) is list and all(map(_PLAIN_KEY.fullmatch, unsigned)):
        digest = hashlib.sha256(b"{")
        for number, key in enumerate(sorted(unsigned)):  # plain ASCII keys: UTF-16 order is str order
            digest.update(b'%s"%s":' % (b"," if number else b"", key.encode("ascii")))
            if key != "entries":
                digest.update(canonical_json(unsigned[key]))
                continue
            for piece in _entries_pieces(unsigned[key]):
                if piece is None:
                    return sha256(canonical_json(unsigned))
                digest.update(piece)
        digest.update(b"}")
        return digest.digest()
    return sha256(canonical_json(unsigned))


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")
_CONTROLS = bytes(range(0x20))


def _entries_pieces(items: list) -> Iterator[bytes | None]:
    """The RFC 8785 bytes of `items`, a list of {"entry": text, "proof": text}, in pieces; a None
    piece, and no more, once an item is anything else or a text holds a lone surrogate or a control
    character other than the newline. Up to there JSON escapes only backslash, quote and newline,
    and a string is its UTF-8 (tests check it against `rfc8785`)."""
    yield b"["
    for number, item in enumerate(items):
        if type(item) is not dict or len(item) != 2:
            yield None
            return
        entry, proof = item.get("entry"), item.get("proof")
        if type(entry) is not str or type(proof) is not str:
            yield None
            return
        try:
            entry_bytes, proof_bytes = entry.encode("utf-8"), proof.encode("utf-8")
        except UnicodeEncodeError:
            yield None
            return
        piece = b'%s{"entry":"%s","proof":"%s"}' % (b"," if number else b"", _escape(entry_bytes),
                                                    _escape(proof_bytes))
        if len(piece.translate(None, _CONTROLS)) != len(piece):
            yield None
            return
        yield piece
    yield b"]"


def signed_bytes_digest(data: bytes, signature: str) -> bytes | None:
    """SHA-256 of the file `data` without its top-level `"signature"` member, read straight from the
    file's bytes: the member cut where it appears as RFC 8785 spells it (`,"signature":` then the
    canonical string `signature`). None when the file holds no such text (or `signature` has no
    RFC 8785 form).

    This is not `bundle_digest`: a file that is not in RFC 8785 form gives another digest. When it
    does give the digest the log key signed, the file less that member is byte for byte what was
    signed (a bundle's RFC 8785 text, which has no top-level `signature` member), so parsing the file
    gives the signed bundle plus its signature, and `bundle_digest` of it gives the same digest
    (tests check this on edited files). A mismatch proves nothing: check with `bundle_digest` then."""
    try:
        member = b',"signature":' + canonical_json(signature)
    except InvalidInput:
        return None
    at = data.find(member)
    if at < 0:
        return None
    view = memoryview(data)
    digest = hashlib.sha256(view[:at])
    digest.update(view[at + len(member):])
    return digest.digest()


def _escape(text: bytes) -> bytes:
    return text.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")


def signature_text(origin: str, trace_id: str, digest: bytes) -> str:
    """The text of the file signature note."""
    return f"{SIGNATURE_HEADER}\n{origin}\ntrace {trace_id}\nsha256 {digest.hex()}\n"


@dataclass(frozen=True)
class SignedBundle:
    """A signed bundle file: its RFC 8785 bytes, and (parsed on first use) the same as a JSON object."""

    data: bytes

    @cached_property
    def bundle(self) -> dict:
        return json.loads(self.data)


def sign_bundle(
    *,
    trace_id: str,
    checkpoint: str,
    entries: Sequence[ExportedEntry],
    signer: NoteSigner,
    clock_key: str | None,
    daily_roots: Sequence[DailyRootProof] = (),
    anchors: Sequence[AnchorLocation] = (),
    exported_at: str,
) -> SignedBundle:
    """The signed bundle, each member encoded to RFC 8785 once for both the digest and the file.

    Preconditions: `checkpoint` is the signed note of the tree the proofs lead to, signed by
    `signer` (whose name is the origin); entries are the run's, in run order, their `data` UTF-8;
    nothing is checked here that the verifier checks.
    """
    if not entries:
        raise InvalidInput("a bundle needs at least one entry", field="entries")
    members = {key: canonical_json(value) for key, value in {
        "format": BUNDLE_FORMAT,
        "origin": signer.name,
        "trace_id": trace_id,
        "exported_at": exported_at,
        "keys": {"log": signer.verifier().to_text(), "clock": clock_key},
        "checkpoint": checkpoint,
        "daily_roots": [
            {"day": d.day, "size": d.size, "checkpoint": d.checkpoint,
             "consistency": [base64.b64encode(h).decode("ascii") for h in d.consistency]}
            for d in daily_roots
        ],
        "anchors": [{"anchor": a.anchor, "size": a.size, "location": a.location} for a in anchors],
    }.items()}
    members["entries"] = _entries_json(entries, checkpoint)
    text = signature_text(signer.name, trace_id, _object_digest(members))  # = bundle_digest(bundle)
    members["signature"] = canonical_json(sign_note(text, [signer]).decode("utf-8"))
    return SignedBundle(b"".join(_object_pieces(members)))


def _object_pieces(members: dict[str, bytes | list[bytes]]) -> list[bytes]:
    """RFC 8785 bytes of an object, in pieces, from its members' canonical bytes (each one bytes
    object or a list of pieces; keys: plain ASCII names, so str order is UTF-16 order)."""
    pieces = [b"{"]
    for number, key in enumerate(sorted(members)):
        pieces.append(b'%s"%s":' % (b"," if number else b"", key.encode("ascii")))
        value = members[key]
        if type(value) is list:
            pieces.extend(value)
        else:
            pieces.append(value)
    pieces.append(b"}")
    return pieces


def _object_digest(members: dict[str, bytes | list[bytes]]) -> bytes:
    digest = hashlib.sha256()
    for piece in _object_pieces(members):
        digest.update(piece)
    return digest.digest()


_CONTROL = re.compile(b"[\x00-\x1f]")


def _entries_json(entries: Sequence[ExportedEntry], checkpoint: str) -> list[bytes]:
    """RFC 8785 bytes of the `entries` member, [{"entry": text, "proof": tlog-proof text}, ...], in
    pieces put together from JSON strings: the checkpoint that ends every proof is encoded once, and
    an entry's text (canonical JSON: no control character outside its escapes) is escaped with
    `_escape` as `canonical_json` would (anything else takes `canonical_json`)."""
    note = canonical_json(checkpoint)[1:]  # without its opening quote
    heads = proof_heads((e.seq, e.proof) for e in entries)
    pieces = [b"["]
    for number, (e, head) in enumerate(zip(entries, heads)):
        data = e.data
        if _CONTROL.search(data) is None and (data.isascii() or data.decode("utf-8")):
            text = b'"%s"' % _escape(data)
        else:
            text = canonical_json(data.decode("utf-8"))
        # A head's only character that JSON escapes is the newline (see proof_heads).
        pieces.append(b'%s{"entry":%s,"proof":"%s%s}' % (b"," if number else b"", text, head.replace(b"\n", b"\\n"),
                                                          note))
    pieces.append(b"]")
    return pieces


def bundle_bytes(bundle: dict) -> bytes:
    """The file: the bundle in RFC 8785 form (any JSON spelling of it verifies the same)."""
    return canonical_json(bundle)

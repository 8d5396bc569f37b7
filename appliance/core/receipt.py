"""Append receipts: the appliance's signed statement that it accepted entries.

Every accepted request gets one receipt covering all of its entries. Its **statement** says which
entries, by digest:

    runlog-receipt/v2
    <origin>
    <first seq>
    <count>
    <received_at>
    base64(SHA-256(entry hash 0 || entry hash 1 || ... || entry hash count-1))

The writer commits requests in groups and signs one **batch note** per group instead of one
note per request: a C2SP signed note, by the log key, over the RFC 9162 Merkle Tree Hash of the
group's statements (leaf i = SHA-256(0x00 || statement i)):

    runlog-receipt-batch/v2
    <origin>
    <statements in the batch: n>
    base64(root)

A receipt is its statement, the line `index <i>`, the statement's RFC 9162 inclusion proof in the
batch (one base64 hash per line), a blank line, then the signed batch note. Checking one needs the
log key and nothing else: the path from the statement to the signed root.

Receipts of version 1 (until session 6) are one signed note per request whose text is the
statement with the first line `runlog-receipt/v1`; `open_receipt` still opens them.
No origin may start with `runlog-receipt`, so neither kind can be mistaken for a checkpoint,
which starts with its origin line.
"""

import base64
import re
from binascii import b2a_base64  # base64 with the line's newline, in C
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.core.errors import NoteFormatError, ProofError, VerificationError
from appliance.core.hashing import HASH_SIZE, leaf_hash, node_hash, sha256
from appliance.core.keys import b64decode_strict, check_key_name
from appliance.core.note import SIGNATURE_PREFIX, Signer, Verifier, open_note
from appliance.core.proof_verify import verify_inclusion
from appliance.core.timefmt import check_utc

HEADER_V1 = "runlog-receipt/v1"
HEADER = "runlog-receipt/v2"
BATCH_HEADER = "runlog-receipt-batch/v2"
RESERVED_PREFIX = "runlog-receipt"  # no origin starts with it: receipts and checkpoints never mix
_COUNT = re.compile(r"0|[1-9][0-9]{0,15}")
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,15})")


class ReceiptError(VerificationError):
    """A receipt does not cover the entries it is said to cover."""


def _count(text: str, name: str, minimum: int) -> int:
    if _COUNT.fullmatch(text) is None or int(text) < minimum:
        raise NoteFormatError(f"receipt {name} must be a decimal integer >= {minimum}, got {text!r}", field=name)
    return int(text)


def _canonical_hash(text: str, what: str) -> bytes:
    value = b64decode_strict(text, what=what)
    if len(value) != HASH_SIZE or base64.b64encode(value).decode() != text:
        raise NoteFormatError(f"receipt {what} is not a canonical base64 SHA-256 hash", field=what)
    return value


def _hash_list(entry_hashes: Iterable[bytes]) -> list[bytes]:
    if isinstance(entry_hashes, (bytes, bytearray, str)) or not isinstance(entry_hashes, Iterable):
        raise NoteFormatError("entry hashes must be a sequence of 32-byte hashes", field="entry_hashes")
    hashes = list(entry_hashes)
    if any(type(h) is not bytes or len(h) != HASH_SIZE for h in hashes):
        raise NoteFormatError("entry hashes must be 32 bytes each", field="entry_hashes")
    return hashes


def digest_of(entry_hashes: Iterable[bytes]) -> bytes:
    """SHA-256 over the concatenated 32-byte entry hashes, in seq order."""
    return sha256(b"".join(_hash_list(entry_hashes)))


def check_origin(origin: object) -> str:
    """A receipt origin: a key name that does not start with `runlog-receipt`."""
    check_key_name(origin)
    if origin.startswith(RESERVED_PREFIX):
        raise NoteFormatError(f"origin must not start with {RESERVED_PREFIX!r}", field="origin")
    return origin


@dataclass(frozen=True)
class Receipt:
    """`count` entries from `first_seq`, accepted at `received_at`, whose hashes digest to `digest`."""

    origin: str
    first_seq: int
    count: int
    received_at: str
    digest: bytes

    def __post_init__(self) -> None:
        check_origin(self.origin)
        if type(self.first_seq) is not int or self.first_seq < 0:
            raise NoteFormatError("receipt first_seq must be an integer >= 0", field="first_seq")
        if type(self.count) is not int or self.count < 1:
            raise NoteFormatError("receipt count must be an integer >= 1", field="count")
        check_utc(self.received_at, field="received_at")
        if type(self.digest) is not bytes or len(self.digest) != HASH_SIZE:
            raise NoteFormatError("receipt digest must be 32 bytes", field="digest")

    @classmethod
    def for_entries(cls, origin: str, first_seq: int, received_at: str, entry_hashes: Sequence[bytes]) -> "Receipt":
        return cls(origin, first_seq, len(entry_hashes), received_at, digest_of(entry_hashes))

    @classmethod
    def from_text(cls, text: str, header: str = HEADER_V1) -> "Receipt":
        """Parse a statement: six lines, the first `header`."""
        if not isinstance(text, str):
            raise NoteFormatError("a receipt body is text", field="receipt")
        lines = text.split("\n")
        if len(lines) != 7 or lines[6] != "" or lines[0] != header:
            raise NoteFormatError(f"a receipt is six lines starting with {header!r}", field="receipt")
        return cls(lines[1], _count(lines[2], "first_seq", 0), _count(lines[3], "count", 1), lines[4],
                   _canonical_hash(lines[5], "digest"))

    def to_text(self, header: str = HEADER_V1) -> str:
        """The statement with first line `header`: a version 1 receipt's signed text by default."""
        digest = base64.b64encode(self.digest).decode()
        return f"{header}\n{self.origin}\n{self.first_seq}\n{self.count}\n{self.received_at}\n{digest}\n"

    def statement(self) -> str:
        """The version 2 statement: the leaf this receipt's batch note commits to."""
        return self.to_text(HEADER)

    def check_covers(self, first_seq: int, entry_hashes: Sequence[bytes]) -> None:
        """Raise `ReceiptError` unless this receipt covers exactly these entries from `first_seq`."""
        entry_hashes = _hash_list(entry_hashes)
        if type(first_seq) is not int:
            raise ReceiptError(f"first seq must be an integer, got {type(first_seq).__name__}")
        if first_seq != self.first_seq or len(entry_hashes) != self.count:
            raise ReceiptError(f"receipt covers seq {self.first_seq}..{self.first_seq + self.count - 1}, "
                               f"not {first_seq}..{first_seq + len(entry_hashes) - 1}")
        if digest_of(entry_hashes) != self.digest:
            raise ReceiptError("entry hashes do not match the receipt's digest")


def batch_tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The RFC 9162 Merkle Tree Hash of `leaves` (leaf hashes, at least one) and each leaf's
    inclusion proof. Built bottom up: each level's nodes hashed in pairs, left to right, and an
    odd last node carried up as it is. That is the RFC's tree (split at the largest power of two
    below n) and its PATH(m, D[n]), without the recursion's slices (tests: the core's proofs)."""
    paths: list[list[bytes]] = [[] for _ in leaves]
    level, spans = list(leaves), [(i, i + 1) for i in range(len(leaves))]  # leaves under each node
    while len(level) > 1:
        parents, parent_spans = [], []
        for j in range(0, len(level) - 1, 2):
            left, right = level[j], level[j + 1]
            (start, middle), (_, end) = spans[j], spans[j + 1]
            for i in range(start, middle):
                paths[i].append(right)
            for i in range(middle, end):
                paths[i].append(left)
            parents.append(node_hash(left, right))
            parent_spans.append((start, end))
        if len(level) & 1:
            parents.append(level[-1])
            parent_spans.append(spans[-1])
        level, spans = parents, parent_spans
    return level[0], paths


class ReceiptSigner:
    """Signs a group commit's receipts with one signature. The origin and the key are checked
    once here; each request's fields only as far as the writer could get them wrong."""

    def __init__(self, origin: str, log_signer: Signer) -> None:
        check_origin(origin)
        if log_signer.name != origin:
            raise NoteFormatError("the log key's name must be the receipt's origin", field="origin")
        self._origin = origin
        self._head = f"{HEADER}\n{origin}\n"
        self._batch_head = f"{BATCH_HEADER}\n{origin}\n"
        self._signature_line = f"\n{SIGNATURE_PREFIX}{origin} "
        self._key_id = log_signer.key_id.value
        self._sign = log_signer.sign
        self._checked_at = ""

    def sign_batch(self, received_at: str, requests: Sequence[tuple[int, Sequence[bytes]]]) -> list[str]:
        """One receipt per (first seq, entry hashes) in `requests`, all accepted at `received_at`."""
        if received_at != self._checked_at:  # a group commit's requests share theirs
            check_utc(received_at, field="received_at")
            self._checked_at = received_at
        statements = []
        for first_seq, entry_hashes in requests:
            if type(first_seq) is not int or first_seq < 0 or not entry_hashes:
                raise NoteFormatError("a receipt covers one or more entries from a seq >= 0", field="first_seq")
            only = entry_hashes[0] if type(entry_hashes) is tuple and len(entry_hashes) == 1 else None  # most requests
            digest = sha256(only) if type(only) is bytes and len(only) == HASH_SIZE else digest_of(entry_hashes)
            statements.append(f"{self._head}{first_seq}\n{len(entry_hashes)}\n{received_at}\n"
                              f"{b2a_base64(digest).decode()}")
        return self._batch(statements)

    def sign_receipts(self, receipts: Sequence[Receipt]) -> list[str]:
        """The same for receipts made elsewhere (any received_at), in one batch."""
        if not receipts or any(not isinstance(r, Receipt) or r.origin != self._origin for r in receipts):
            raise NoteFormatError(f"a batch holds one or more receipts of origin {self._origin!r}", field="origin")
        return self._batch([r.statement() for r in receipts])

    def _batch(self, statements: list[str]) -> list[str]:
        root, paths = batch_tree([leaf_hash(s.encode()) for s in statements])
        body = f"{self._batch_head}{len(statements)}\n{base64.b64encode(root).decode()}\n"
        signature = base64.b64encode(self._key_id + self._sign(body.encode())).decode()
        after_path = f"\n{body}{self._signature_line}{signature}\n"
        return [f"{statement}index {index}\n{b''.join(map(b2a_base64, path)).decode()}{after_path}"
                for index, (statement, path) in enumerate(zip(statements, paths))]


def sign_receipts(receipts: Sequence[Receipt], log_signer: Signer) -> list[str]:
    """Receipts of one batch (one signature), in order; the log key's name must be their origin."""
    if not receipts:
        raise NoteFormatError("a batch holds one or more receipts", field="receipts")
    return ReceiptSigner(receipts[0].origin, log_signer).sign_receipts(receipts)


def _open_batch_receipt(text: str, log_verifier: Verifier) -> Receipt:
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise NoteFormatError("a receipt has a blank line before its batch note", field="receipt")
    batch = open_note(note, [log_verifier]).text.split("\n")
    lines = head.split("\n")
    if len(lines) < 7:
        raise NoteFormatError("a receipt is its statement, an index line and the batch note", field="receipt")
    receipt = Receipt.from_text("\n".join(lines[:6]) + "\n", HEADER)
    index_line = _INDEX.fullmatch(lines[6])
    if index_line is None:
        raise NoteFormatError(f"receipt line 7 must be 'index <decimal>', got {lines[6][:40]!r}", field="index")
    path = [_canonical_hash(line, "proof") for line in lines[7:]]
    if len(batch) != 5 or batch[4] != "" or batch[0] != BATCH_HEADER:
        raise NoteFormatError(f"a batch note is four lines starting with {BATCH_HEADER!r}", field="receipt")
    if batch[1] != receipt.origin:
        raise ReceiptError(f"the batch note is from origin {batch[1]!r}, the statement from {receipt.origin!r}")
    size, root = _count(batch[2], "batch size", 1), _canonical_hash(batch[3], "batch root")
    index = int(index_line[1])
    try:
        verify_inclusion(index, size, leaf_hash(receipt.statement().encode()), path, root)
    except ProofError as error:
        raise ReceiptError(f"the statement is not in the signed batch: {error}") from error
    return receipt


def open_receipt(note: str | bytes, log_verifier: Verifier, *, origin: str) -> Receipt:
    """Signature first (for version 2: then the statement's path to the signed batch root), then
    the body, then the origin. Opens receipts of both versions."""
    if isinstance(note, (bytes, bytearray)):
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError as error:
            raise NoteFormatError("a receipt is UTF-8 text", field="receipt") from error
    if isinstance(note, str) and note.startswith(HEADER + "\n"):
        receipt = _open_batch_receipt(note, log_verifier)
    else:
        receipt = Receipt.from_text(open_note(note, [log_verifier]).text)
    if receipt.origin != origin:
        raise ReceiptError(f"receipt is from origin {receipt.origin!r}, expected {origin!r}")
    return receipt

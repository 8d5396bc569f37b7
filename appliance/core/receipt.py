"""Append receipts: the appliance's signed statement that it accepted entries.

A receipt is a C2SP signed note, signed by the log key, whose text is:

    runlog-receipt/v1
    <origin>
    <first seq>
    <count>
    <received_at>
    base64(SHA-256(entry hash 0 || entry hash 1 || ... || entry hash count-1))

One request gets one receipt covering all of its entries, so a batch of 1,000 costs one
signature. The first line can never be a checkpoint's origin (`Receipt` refuses that origin), so
a receipt cannot be mistaken for a checkpoint, which starts with the origin line.
"""

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.core.errors import NoteFormatError, VerificationError
from appliance.core.hashing import HASH_SIZE, sha256
from appliance.core.keys import b64decode_strict, check_key_name
from appliance.core.note import SIGNATURE_PREFIX, Signer, Verifier, open_note, sign_note
from appliance.core.timefmt import check_utc

HEADER = "runlog-receipt/v1"
_COUNT = re.compile(r"0|[1-9][0-9]{0,15}")


class ReceiptError(VerificationError):
    """A receipt does not cover the entries it is said to cover."""


def _count(text: str, name: str, minimum: int) -> int:
    if _COUNT.fullmatch(text) is None or int(text) < minimum:
        raise NoteFormatError(f"receipt {name} must be a decimal integer >= {minimum}, got {text!r}", field=name)
    return int(text)


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


@dataclass(frozen=True)
class Receipt:
    """`count` entries from `first_seq`, accepted at `received_at`, whose hashes digest to `digest`."""

    origin: str
    first_seq: int
    count: int
    received_at: str
    digest: bytes

    def __post_init__(self) -> None:
        check_key_name(self.origin)
        if self.origin == HEADER:
            raise NoteFormatError(f"origin must not be {HEADER!r}", field="origin")
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
    def from_text(cls, text: str) -> "Receipt":
        if not isinstance(text, str):
            raise NoteFormatError("a receipt body is text", field="receipt")
        lines = text.split("\n")
        if len(lines) != 7 or lines[6] != "" or lines[0] != HEADER:
            raise NoteFormatError(f"a receipt is six lines starting with {HEADER!r}", field="receipt")
        digest = b64decode_strict(lines[5], what="digest")
        if base64.b64encode(digest).decode() != lines[5]:
            raise NoteFormatError("receipt digest is not canonical base64", field="digest")
        return cls(lines[1], _count(lines[2], "first_seq", 0), _count(lines[3], "count", 1), lines[4], digest)

    def to_text(self) -> str:
        digest = base64.b64encode(self.digest).decode()
        return f"{HEADER}\n{self.origin}\n{self.first_seq}\n{self.count}\n{self.received_at}\n{digest}\n"

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


def sign_receipt(receipt: Receipt, log_signer: Signer) -> str:
    """The receipt as a signed note, signed by the log key (whose name is the origin)."""
    if log_signer.name != receipt.origin:
        raise NoteFormatError("the log key's name must be the receipt's origin", field="origin")
    return sign_note(receipt.to_text(), [log_signer]).decode("utf-8")


class ReceiptSigner:
    """`sign_receipt` for the writer, which signs a receipt per request: the origin and the key are
    checked once here, and each receipt's fields are checked only as far as the writer could get
    them wrong. Byte for byte the note `sign_receipt` makes (property-tested)."""

    def __init__(self, origin: str, log_signer: Signer) -> None:
        Receipt(origin, 0, 1, "1970-01-01T00:00:00Z", bytes(HASH_SIZE))  # checks the origin
        if log_signer.name != origin:
            raise NoteFormatError("the log key's name must be the receipt's origin", field="origin")
        self._head = f"{HEADER}\n{origin}\n"
        self._signature_line = f"\n{SIGNATURE_PREFIX}{origin} "
        self._key_id = log_signer.key_id.value
        self._sign = log_signer.sign
        self._checked_at = ""

    def sign(self, first_seq: int, received_at: str, entry_hashes: Sequence[bytes]) -> str:
        if type(first_seq) is not int or first_seq < 0 or not entry_hashes:
            raise NoteFormatError("a receipt covers one or more entries from a seq >= 0", field="first_seq")
        if received_at != self._checked_at:  # a group commit's requests share theirs
            check_utc(received_at, field="received_at")
            self._checked_at = received_at
        text = (f"{self._head}{first_seq}\n{len(entry_hashes)}\n{received_at}\n"
                f"{base64.b64encode(digest_of(entry_hashes)).decode()}\n")
        signature = base64.b64encode(self._key_id + self._sign(text.encode())).decode()
        return f"{text}{self._signature_line}{signature}\n"


def open_receipt(note: str | bytes, log_verifier: Verifier, *, origin: str) -> Receipt:
    """Signature first, then the body, then the origin."""
    opened = open_note(note, [log_verifier])
    receipt = Receipt.from_text(opened.text)
    if receipt.origin != origin:
        raise ReceiptError(f"receipt is from origin {receipt.origin!r}, expected {origin!r}")
    return receipt

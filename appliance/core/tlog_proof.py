"""C2SP tlog-proof@v1 (c2sp.org/tlog-proof): one entry's index, inclusion proof and signed checkpoint.

Text: the line ``c2sp.org/tlog-proof@v1``, an optional ``extra <base64>`` line, ``index <N>``, one
line of standard base64 per proof hash (from the leaf's sibling up), one empty line, then the
signed checkpoint note exactly as the log signed it. Parsing here checks the shape only; the
caller opens the checkpoint and checks the proof against it.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.core.errors import NoteFormatError
from appliance.core.hashing import HASH_SIZE
from appliance.core.keys import b64decode_strict

HEADER = "c2sp.org/tlog-proof@v1"
MAX_PROOF_HASHES = 64  # an inclusion proof in a tree below 2^64 leaves has at most 64 hashes
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
# 32 bytes in padded standard base64, canonical: the last digit before "=" has its two low bits clear.
_HASH_B64 = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
_HASH_LINES = re.compile(f"{_HASH_B64.pattern}(?:\n{_HASH_B64.pattern})*")


class TlogProofError(NoteFormatError):
    """A tlog-proof text is malformed."""


@dataclass(frozen=True)
class TlogProof:
    """An entry's leaf index, its RFC 9162 inclusion proof, and the signed checkpoint (note text)."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def to_text(self) -> str:
        head = [HEADER]
        if self.extra is not None:
            head.append("extra " + _b64(self.extra))
        return _text(head, self.index, map(_b64, self.hashes), self.checkpoint)

    @classmethod
    def from_text(cls, text: object) -> TlogProof:
        """Parse a tlog-proof strictly (`to_text()` of the result gives back the same text)."""
        if not isinstance(text, str):
            raise TlogProofError("a tlog-proof is text", field="proof")
        head, sep, checkpoint = text.partition("\n\n")
        if not sep or checkpoint == "":
            raise TlogProofError("tlog-proof has no empty line followed by a signed checkpoint", field="proof")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise TlogProofError(f"tlog-proof must start with {HEADER!r}", field="proof")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = b64decode_strict(rest.pop(0)[len("extra "):], what="extra")
        if not rest or not rest[0].startswith("index "):
            raise TlogProofError("tlog-proof has no 'index N' line", field="index")
        index_text = rest.pop(0)[len("index "):]
        if _DECIMAL.fullmatch(index_text) is None or int(index_text) >= 2**64:
            raise TlogProofError(f"tlog-proof index {index_text[:30]!r} is not a decimal below 2^64", field="index")
        if len(rest) > MAX_PROOF_HASHES:
            raise TlogProofError(f"tlog-proof has more than {MAX_PROOF_HASHES} hashes", field="proof")
        if rest and _HASH_LINES.fullmatch("\n".join(rest)) is None:  # one match for all; then find which
            number = next(n for n, line in enumerate(rest) if _HASH_B64.fullmatch(line) is None)
            raise TlogProofError(f"proof hash {number} is not {HASH_SIZE} bytes in canonical base64", field="proof")
        return cls(int(index_text), tuple(map(binascii.a2b_base64, rest)), checkpoint, extra)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _text(head: list[str], index: int, hashes: Iterable[str], checkpoint: str) -> str:
    head.append(f"index {index}")
    head.extend(hashes)
    return "\n".join(head) + "\n\n" + checkpoint


def proof_texts(proofs: Iterable[tuple[int, Sequence[bytes]]], checkpoint: str) -> list[str]:
    """`TlogProof(index, hashes, checkpoint).to_text()` of many proofs of one tree, without extra
    lines; a hash many proofs share (every path's upper part) is base64-encoded once."""
    texts: dict[bytes, str] = {}

    def b64(digest: bytes) -> str:
        text = texts.get(digest)
        if text is None:
            text = texts[digest] = _b64(digest)
        return text

    return [_text([HEADER], index, map(b64, hashes), checkpoint) for index, hashes in proofs]

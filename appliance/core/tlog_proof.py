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
_HEADER_BYTES = HEADER.encode("ascii")
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
        return _head(self.index, self.hashes, self.extra).decode("ascii") + self.checkpoint

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


def _head(index: int, hashes: Iterable[bytes], extra: bytes | None = None) -> bytes:
    """The text before the checkpoint, empty line included (b2a_base64 ends each line in a newline)."""
    extra_line = b"" if extra is None else b"extra " + binascii.b2a_base64(extra)
    return b"%s\n%sindex %d\n%s\n" % (_HEADER_BYTES, extra_line, index, b"".join(map(binascii.b2a_base64, hashes)))


def proof_heads(proofs: Iterable[tuple[int, Sequence[bytes]]]) -> list[bytes]:
    """For many proofs (index, hashes), the text of each that comes before the signed checkpoint,
    empty line included: `TlogProof(index, hashes, checkpoint).to_text()` is the head (ASCII:
    letters, digits, "+/=@. " and newlines) followed by the checkpoint."""
    return [_head(index, hashes) for index, hashes in proofs]

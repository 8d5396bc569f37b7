"""Many tlog-proofs against one signed checkpoint, checked fast: a bundle's entries are in seq order,
so each proof's upper hash lines are the previous proof's, as text.

`ProofMemo.holds(text, index, leaf_hash)` answers True only when parsing `text` with
`TlogProof.from_text` would give index `index` and that checkpoint, and `verify_inclusion` would
accept its hashes for the leaf; otherwise False, and the caller takes that long way, which also
says what is wrong. It never raises. How: RFC 9162's algorithm (see proof_verify), from any step
on, depends only on the position there (fn, sn), the node hash r so far and the remaining hashes;
so a proof that reaches a step where an earlier good proof was, with the same r, and whose text from
that hash line on is that proof's text (the remaining lines and the checkpoint), holds without
reading further. Lines below that point are decoded and checked as canonical base64 one by one.
"""

from __future__ import annotations

from binascii import Error as Base64Error
from binascii import a2b_base64, b2a_base64
from hashlib import sha256

from appliance.core.hashing import HASH_SIZE
from appliance.core.proof_verify import inclusion_length
from appliance.core.tlog_proof import HEADER

_LINE = 45  # 44 characters of padded base64 for 32 bytes, and the newline


class ProofMemo:
    """Checks tlog-proofs against one checkpoint (its note text, tree size and root hash)."""

    def __init__(self, note: str, size: int, root: bytes) -> None:
        """Preconditions: `note` is the signed checkpoint's text, `size` > 0 its tree size, `root`
        its 32-byte root hash."""
        self._tail = "\n" + note
        self._size = size
        self._root = root
        # sn at a step's start (it names the level) -> (fn, r, text of that good proof, offset of the step's line)
        self._seen: dict[int, tuple[int, bytes, str, int]] = {}

    def holds(self, text: object, index: int, leaf_hash: bytes) -> bool:
        """True when `text` is a tlog-proof of leaf `index` (with `leaf_hash`) against this checkpoint
        that holds; False when it may not (check it in full then). Precondition: `index` is an int."""
        size = self._size
        if type(text) is not str or not 0 <= index < min(size, 2**64) or not text.endswith(self._tail):
            return False
        head = f"{HEADER}\nindex {index}\n"
        if not text.startswith(head):
            return False
        start = len(head)
        end = len(text) - len(self._tail)
        count = inclusion_length(index, size)
        if end - start != count * _LINE:
            return False
        try:
            lines = text[start:end].encode("ascii")
        except UnicodeEncodeError:
            return False
        seen, found = self._seen, []
        fn, sn, r = index, size - 1, leaf_hash
        for step in range(count):
            offset = start + step * _LINE
            known = seen.get(sn)
            if known is not None and known[0] == fn and known[1] == r:
                other, at = known[2], known[3]
                if len(text) - offset == len(other) - at and text.startswith(other[at:], offset):
                    break  # the rest is a good proof's: it leads to the root
            line = lines[step * _LINE:(step + 1) * _LINE]
            try:
                p = a2b_base64(line)
            except Base64Error:
                return False
            if len(p) != HASH_SIZE or b2a_base64(p) != line:  # canonical base64 of 32 bytes, newline-ended
                return False
            found.append((sn, fn, r, offset))
            if fn & 1 or fn == sn:
                r = sha256(b"\x01" + p + r).digest()
                while fn != 0 and not fn & 1:
                    fn >>= 1
                    sn >>= 1
            else:
                r = sha256(b"\x01" + r + p).digest()
            fn >>= 1
            sn >>= 1
        else:
            if sn != 0 or r != self._root:
                return False
        for sn, fn, r, offset in found:
            seen[sn] = (fn, r, text, offset)
        return True

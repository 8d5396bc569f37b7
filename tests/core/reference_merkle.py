"""Slow, obviously-correct RFC 9162 Merkle tree, written straight from the RFC's definitions.

https://www.rfc-editor.org/rfc/rfc9162#section-2.1.1 (MTH), 2.1.3.1 (PATH), 2.1.4.1
(PROOF / SUBPROOF). Inputs are the entries D themselves; nothing here is shared with
`appliance.core` except SHA-256, so the fast code is checked against an independent derivation.
"""

import hashlib
from collections.abc import Sequence


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n])."""
    n = len(d)
    if n == 0:
        return _hash(b"")
    if n == 1:
        return _hash(b"\x00" + d[0])
    k = _k(n)
    return _hash(b"\x01" + mth(d[0:k]) + mth(d[k:n]))


def path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the inclusion proof for entry m, leaf to root."""
    n = len(d)
    if n == 1 and m == 0:
        return []
    k = _k(n)
    if m < k:
        return path(m, d[0:k]) + [mth(d[k:n])]
    return path(m - k, d[k:n]) + [mth(d[0:k])]


def proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): the consistency proof from the first m entries to all n (0 < m < n)."""
    return subproof(m, d, True)


def subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return subproof(m, d[0:k], b) + [mth(d[k:n])]
    return subproof(m - k, d[k:n], False) + [mth(d[0:k])]


def path_shape(m: int, n: int) -> list[str]:
    """How PATH(m, D[n]) is used, leaf to root: "R" where the proof hash is the right sibling,
    "L" where it is the left one. A verifier's computation depends only on this shape."""
    if n == 1 and m == 0:
        return []
    k = _k(n)
    if m < k:
        return path_shape(m, k) + ["R"]
    return path_shape(m - k, n - k) + ["L"]


def proof_shape(m: int, n: int, b: bool = True) -> list[str]:
    """How SUBPROOF(m, D[n], b) is used, leaf to root: "old-root" when the walk starts from the
    verifier's own old root, "seed" when it starts from the first proof hash, then "R" for a
    right sibling (new tree only) and "L" for a left sibling (in both trees)."""
    if m == n:
        return ["old-root"] if b else ["seed"]
    k = _k(n)
    if m <= k:
        return proof_shape(m, k, b) + ["R"]
    return proof_shape(m - k, n - k, False) + ["L"]

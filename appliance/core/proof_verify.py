"""Verify RFC 9162 inclusion and consistency proofs, following the RFC's algorithms step by step.

https://www.rfc-editor.org/rfc/rfc9162#section-2.1.3.2 (inclusion) and
https://www.rfc-editor.org/rfc/rfc9162#section-2.1.4.2 (consistency). Before running them we
check the inputs and the proof length, so a bad proof is refused with a message that says why;
the RFC steps alone would refuse the same proofs, just less helpfully.
Every refusal is a `ProofError`; nothing else escapes.
"""

from collections.abc import Sequence
from hashlib import sha256 as _sha256

from appliance.core.errors import ProofError
from appliance.core.hashing import EMPTY_ROOT, HASH_SIZE, node_hash


def _count(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise ProofError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def _hash(value: object, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ProofError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ProofError(f"{name} is {len(value)} bytes, a SHA-256 hash is {HASH_SIZE}")
    return bytes(value)


def _path(proof: object) -> list[bytes]:
    if type(proof) in (list, tuple) and {*map(type, proof)} <= {bytes} and {*map(len, proof)} <= {HASH_SIZE}:
        return list(proof)  # the common case, checked without a call per hash
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        raise ProofError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
    return [_hash(h, f"proof[{i}]") for i, h in enumerate(proof)]


def inclusion_length(index: int, size: int) -> int:
    """Hashes in the inclusion proof of `index` in `size` (index < size): one per level below
    the point where the paths to `index` and to the last leaf part, one per left peak above it."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(old_size: int, new_size: int) -> int:
    """Hashes in the consistency proof for 0 < old_size < new_size: the old tree's last peak
    (unless the old tree is perfect) plus that peak's inclusion proof, counted at its level."""
    level = (old_size & -old_size).bit_length() - 1
    peak_index = (old_size - 1) >> level
    seed = 0 if peak_index == 0 else 1
    return seed + inclusion_length(peak_index, ((new_size - 1) >> level) + 1)


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for leaf `index` with `leaf_hash` in a tree of `size`.

    Preconditions: 0 <= index < size; leaf_hash and every proof hash are 32 bytes; proof is
    ordered from the leaf's sibling up to the root. Raises `ProofError` otherwise.
    """
    _count(index, "leaf index")
    _count(size, "tree size")
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    leaf = _hash(leaf_hash, "leaf hash")
    path = _path(proof)
    want = inclusion_length(index, size)
    if len(path) != want:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size} must have {want} hashes,"
            f" got {len(path)}"
        )
    # RFC 9162 section 2.1.3.2, steps 2 to 5 (node_hash inlined: an export's verification runs this
    # loop ~20 times per entry).
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while fn != 0 and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `proof` shows leaf `index` with `leaf_hash` is in the tree of `size` with `root`.

    Preconditions as for `root_from_inclusion_proof`; `root` is 32 bytes. Raises `ProofError`,
    carrying expected and computed roots when the proof leads elsewhere.
    """
    expected = _hash(root, "root")
    computed = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if computed != expected:
        raise ProofError(
            f"inclusion proof for leaf {index} does not lead to the root of size {size}",
            expected=expected,
            computed=computed,
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of `new_size` with `new_root` extends the tree of `old_size` with `old_root`.

    Preconditions: 0 <= old_size <= new_size; roots and proof hashes are 32 bytes. When the sizes
    are equal the proof must be empty and the roots equal; from the empty tree the proof must be
    empty and `old_root` must be SHA-256 of nothing. Raises `ProofError`.
    """
    _count(old_size, "old size")
    _count(new_size, "new size")
    first_hash = _hash(old_root, "old root")
    second_hash = _hash(new_root, "new root")
    path = _path(proof)
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == new_size or old_size == 0:
        _verify_without_proof(old_size, new_size, path, first_hash, second_hash)
        return
    want = _consistency_length(old_size, new_size)
    if len(path) != want:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} must have {want} hashes, got {len(path)}"
        )
    fr, sr = _roots_from_consistency_path(old_size, new_size, path, first_hash)
    if fr != first_hash:
        raise ProofError(
            f"consistency proof does not lead to the old root of size {old_size}",
            expected=first_hash,
            computed=fr,
        )
    if sr != second_hash:
        raise ProofError(
            f"consistency proof does not lead to the new root of size {new_size}",
            expected=second_hash,
            computed=sr,
        )


def _verify_without_proof(
    old_size: int, new_size: int, path: list[bytes], first: bytes, second: bytes
) -> None:
    """The cases RFC 9162 leaves out (old size 0, or equal sizes): nothing to prove but the roots."""
    if path:
        raise ProofError(f"a proof from size {old_size} to {new_size} must be empty, got {len(path)} hashes")
    if old_size == 0 and first != EMPTY_ROOT:
        raise ProofError("old root is not the root of the empty tree", expected=first, computed=EMPTY_ROOT)
    if old_size == new_size and first != second:
        raise ProofError(
            f"trees of equal size {old_size} have different roots", expected=second, computed=first
        )


def _roots_from_consistency_path(
    first: int, second: int, path: list[bytes], first_hash: bytes
) -> tuple[bytes, bytes]:
    """RFC 9162 section 2.1.4.2 steps 1 to 6 for 0 < first < second: the old and new roots (fr, sr)."""
    if not path:
        raise ProofError("consistency proof is empty")
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn != 0 and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7's size check; the caller compares the roots.
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the new root")
    return fr, sr

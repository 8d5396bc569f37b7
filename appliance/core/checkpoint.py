"""C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint) and opening signed checkpoints.

Body: origin line, tree size in decimal (no leading zeros except "0"), standard base64 of the
32-byte root hash, then optional non-empty extension lines; every line ends in a newline.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Iterable

from appliance.core.cosignature import Cosignature, CosignatureSigner, CosignatureVerifier, timestamp_of
from appliance.core.errors import InvalidInput, NoteFormatError, SignatureError, VerificationError
from appliance.core.hashing import HASH_SIZE
from appliance.core.keys import b64decode_strict
from appliance.core.note import Note, Signer, Verifier, open_note, sign_note

MAX_TREE_SIZE = 2**64 - 1  # Go's tlog and formats parse the size as a uint64
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class CheckpointOriginError(VerificationError):
    """A correctly signed checkpoint names a different log than the one the caller expects."""

    def __init__(self, expected: str, found: str) -> None:
        super().__init__(f"checkpoint origin is {found!r}, expected {expected!r}")
        self.expected = expected
        self.found = found


def _check_line(value: object, what: str) -> str:
    if not isinstance(value, str) or value == "":
        raise NoteFormatError(f"checkpoint {what} must be a non-empty string", field=what)
    for ch in value:
        if ord(ch) < 0x20:
            raise NoteFormatError(f"checkpoint {what} contains control character {ch!r}", field=what)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise NoteFormatError(f"checkpoint {what} is not valid UTF-8", field=what) from err
    return value


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: its origin, tree size and RFC 9162 root hash (raw 32 bytes)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
            raise NoteFormatError("checkpoint size must be an integer in [0, 2^64-1]", field="size")
        if not isinstance(self.root_hash, (bytes, bytearray)) or len(self.root_hash) != HASH_SIZE:
            raise NoteFormatError(f"checkpoint root hash must be {HASH_SIZE} bytes", field="root_hash")
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        if isinstance(self.extensions, (str, bytes)) or not isinstance(self.extensions, Iterable):
            raise NoteFormatError("checkpoint extensions are a sequence of lines", field="extension")
        extensions = tuple(self.extensions)
        for line in extensions:
            _check_line(line, "extension")
        object.__setattr__(self, "extensions", extensions)

    @classmethod
    def from_text(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint body strictly; `to_text()` of the result gives back the same bytes."""
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as err:
                raise NoteFormatError("checkpoint is not valid UTF-8", field="checkpoint") from err
        if not isinstance(text, str):
            raise NoteFormatError("a checkpoint body is text", field="checkpoint")
        if not text.endswith("\n"):
            raise NoteFormatError("checkpoint must end in a newline", field="checkpoint")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteFormatError("checkpoint needs origin, size and root hash lines", field="checkpoint")
        origin, size_text, root_text, *extensions = lines
        if _DECIMAL.fullmatch(size_text) is None:
            raise NoteFormatError(f"checkpoint size {size_text[:30]!r} is not a decimal without leading "
                                  "zeros", field="size")
        root_hash = b64decode_strict(root_text, what="root_hash")
        if len(root_hash) != HASH_SIZE:
            raise NoteFormatError(f"checkpoint root hash is {len(root_hash)} bytes, expected {HASH_SIZE}",
                                  field="root_hash")
        if base64.b64encode(root_hash).decode("ascii") != root_text:
            raise NoteFormatError("checkpoint root hash is not canonical base64", field="root_hash")
        if len(size_text) > len(str(MAX_TREE_SIZE)):
            raise NoteFormatError("checkpoint size exceeds 2^64-1", field="size")
        return cls(origin, int(size_text), root_hash, tuple(extensions))

    def to_text(self) -> str:
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions))


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose log signature verified, with the cosignatures that verified too."""

    checkpoint: Checkpoint
    cosignatures: tuple[Cosignature, ...]
    note: Note


def sign_checkpoint(
    checkpoint: Checkpoint,
    log_signer: Signer,
    cosigners: Iterable[CosignatureSigner] = (),
    timestamp: int | None = None,
) -> bytes:
    """Sign `checkpoint` as a note: the log's signature line first, then one cosignature/v1 line per
    cosigner attesting `timestamp` (POSIX seconds, required when there are cosigners).

    Precondition (checked): the log key's name equals the origin, as tlog-checkpoint recommends.
    """
    if log_signer.name != checkpoint.origin:
        raise InvalidInput(f"log key name {log_signer.name!r} differs from checkpoint origin "
                           f"{checkpoint.origin!r}", field="origin")
    signers: list[Signer] = [log_signer]
    for cosigner in cosigners:
        if timestamp is None:
            raise InvalidInput("cosigning needs a timestamp (seconds); none was given", field="timestamp")
        signers.append(cosigner.at(timestamp))
    return sign_note(checkpoint.to_text(), signers)


def open_checkpoint(
    message: bytes | str,
    log_verifier: Verifier,
    *,
    origin: str,
    cosigner_verifiers: Iterable[CosignatureVerifier] = (),
) -> SignedCheckpoint:
    """Verify a signed checkpoint in this order: the log's signature, then the body, then the origin.

    Cosignatures by `cosigner_verifiers` are verified too (a bad one rejects the checkpoint) and
    returned with their timestamps; signatures by other keys are ignored. No quorum is enforced here.
    """
    cosigner_verifiers = tuple(cosigner_verifiers)
    note = open_note(message, [log_verifier, *cosigner_verifiers])
    log_key = (log_verifier.name, log_verifier.key_id)
    if not any((sig.name, sig.key_id) == log_key for sig in note.verified):
        raise SignatureError(f"checkpoint is not signed by the log key "
                             f"{log_verifier.name}+{log_verifier.key_id.hex()}")
    checkpoint = Checkpoint.from_text(note.text)
    if checkpoint.origin != origin:
        raise CheckpointOriginError(origin, checkpoint.origin)
    cosigner_keys = {(v.name, v.key_id) for v in cosigner_verifiers}
    cosignatures = tuple(
        Cosignature(sig.name, sig.key_id, timestamp_of(sig.signature))
        for sig in note.verified
        if (sig.name, sig.key_id) in cosigner_keys
    )
    return SignedCheckpoint(checkpoint, cosignatures, note)

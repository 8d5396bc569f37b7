"""The one interface every anchor implements. Each anchor is a small, independent module."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from appliance.core.checkpoint import Checkpoint
from appliance.core.errors import NoteFormatError, RunlogError
from appliance.core.note import UnverifiedNoteError, open_note


class AnchorError(RunlogError):
    """The anchor could not be reached or refused the operation; retry later."""


class AnchorConfigError(AnchorError):
    """The anchor is reachable but not set up to keep checkpoints immutable (for example an S3
    bucket without Object Lock, a Postgres table without its append-only trigger)."""


class AnchorFork(AnchorError):
    """The anchor holds a different checkpoint for the same origin and size: the log forked."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True)
class AnchoredCheckpoint:
    """A signed checkpoint note (C2SP signed note, UTF-8 text) as an anchor holds it."""

    origin: str
    size: int
    note: str

    @classmethod
    def from_note(cls, note: str) -> "AnchoredCheckpoint":
        """Read origin and size from the note's checkpoint body. The signature is NOT verified
        (anchors store notes; verifiers check them); a malformed note raises `NoteFormatError`."""
        body = checkpoint_body(note)
        return cls(body.origin, body.size, note)

    def checkpoint(self) -> Checkpoint:
        """The parsed body; raises `NoteFormatError` when it does not match `origin` and `size`."""
        body = checkpoint_body(self.note)
        if (body.origin, body.size) != (self.origin, self.size):
            raise NoteFormatError(f"the note is for {body.origin!r} size {body.size}, not {self.origin!r} "
                                  f"size {self.size}", field="note")
        return body


def checkpoint_body(note: str) -> Checkpoint:
    """The checkpoint in a signed note, parsed strictly but without checking any signature."""
    try:
        text = open_note(note, []).text  # never returns: no verifier can verify
    except UnverifiedNoteError as unverified:
        text = unverified.note.text
    return Checkpoint.from_text(text)


def fork_message(anchor: str, size: int, held: str, ours: str) -> str:
    """Explain a fork: whether the roots differ (different history) or only the signatures."""
    try:
        same_root = checkpoint_body(held).root_hash == checkpoint_body(ours).root_hash
    except NoteFormatError:
        same_root = False
    what = ("the same root with different signatures (the checkpoint was signed twice)" if same_root
            else "a different root (a different history)")
    return f"{anchor} already holds a different checkpoint for size {size}: {what}; nothing was overwritten"


class Anchor(Protocol):
    """Where checkpoints are mirrored. `name` identifies it in the outbox and in status output."""

    name: str

    def publish(self, checkpoint: AnchoredCheckpoint) -> str:
        """Store `checkpoint`; return where it lives (table/row, bucket/key/version, path).

        Idempotent: publishing the identical note again is a no-op that returns the same location.
        A different note for the same origin and size raises `AnchorFork` and overwrites nothing.
        Unreachable or refusing anchors raise `AnchorError` (`AnchorConfigError` when the anchor
        would not keep the checkpoint immutable)."""
        ...

    def fetch(self, size: int) -> AnchoredCheckpoint | None:
        """The checkpoint the anchor holds for our origin at `size`, or None. Raises `AnchorFork`
        when the anchor holds conflicting copies for that size, `AnchorError` when unreachable."""
        ...

    def latest(self) -> AnchoredCheckpoint | None:
        """The checkpoint with the largest size the anchor holds for our origin, or None."""
        ...

    def checkpoints(self) -> Iterator[AnchoredCheckpoint]:
        """Every checkpoint the anchor holds for our origin, in increasing size."""
        ...

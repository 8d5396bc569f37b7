"""The one interface every anchor implements. Each anchor is a small, independent module."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from appliance.core.errors import RunlogError


class AnchorError(RunlogError):
    """The anchor could not be reached or refused the operation; retry later."""


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


class Anchor(Protocol):
    """Where checkpoints are mirrored. `name` identifies it in the outbox and in status output."""

    name: str

    def publish(self, checkpoint: AnchoredCheckpoint) -> str:
        """Store `checkpoint`; return where it lives (table/row, bucket/key/version, path).

        Idempotent: publishing the identical note again is a no-op that returns the same location.
        A different note for the same origin and size raises `AnchorFork` and overwrites nothing.
        Unreachable or refusing anchors raise `AnchorError`."""
        ...

    def fetch(self, size: int) -> AnchoredCheckpoint | None:
        """The checkpoint the anchor holds for our origin at `size`, or None."""
        ...

    def checkpoints(self) -> Iterator[AnchoredCheckpoint]:
        """Every checkpoint the anchor holds for our origin, in increasing size."""
        ...

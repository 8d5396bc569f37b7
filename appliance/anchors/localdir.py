"""The local-directory anchor: one file per checkpoint, for development and as a second copy on
another disk (a mounted volume, a NAS). It is only as immutable as the directory's permissions.

Layout: `<dir>/<origin, percent-encoded>/checkpoints/<size, 20 digits>`, the note's bytes exactly.
A file is written to a temporary name, fsynced, then hard-linked to its final name and the
directory fsynced (on the first publish also each directory it created, into its parent). `link`
(unlike `rename`) fails when the target exists, so even two processes publishing at once can never
overwrite a checkpoint.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from appliance.anchors.base import AnchoredCheckpoint, AnchorError, AnchorFork, fork_message
from appliance.dirsync import fsync_directory, make_directory

_DIGITS = 20


class LocalDirAnchor:
    """Checkpoints of `origin` as files under `directory` (created on first publish)."""

    def __init__(self, directory: str | Path, *, origin: str) -> None:
        self.directory = Path(directory).absolute()
        self.origin = origin
        self.name = f"dir:{self.directory}"
        self._folder = self.directory / quote(origin, safe="") / "checkpoints"

    def _path(self, size: int) -> Path:
        return self._folder / f"{size:0{_DIGITS}d}"

    def publish(self, checkpoint: AnchoredCheckpoint) -> str:
        """Write the note once; the same note again is a no-op; a different one is `AnchorFork`."""
        if checkpoint.origin != self.origin:
            raise AnchorError(f"{self.name} keeps checkpoints of {self.origin!r}, not {checkpoint.origin!r}")
        target = self._path(checkpoint.size)
        data = checkpoint.note.encode("utf-8")
        try:
            make_directory(self._folder)  # new folders are synced into their parents
            if not target.exists():
                self._write_once(target, data)
            held = target.read_bytes()
        except OSError as error:
            raise AnchorError(f"{self.name}: cannot write {target}: {error}") from error
        if held != data:
            raise AnchorFork(fork_message(self.name, checkpoint.size, held.decode("utf-8", "replace"),
                                          checkpoint.note), size=checkpoint.size)
        return str(target)

    def _write_once(self, target: Path, data: bytes) -> None:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=self._folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o444)
            with contextlib.suppress(FileExistsError):  # someone else won the race: compare after
                os.link(temporary, target)
        finally:
            os.unlink(temporary)
        fsync_directory(self._folder)

    def fetch(self, size: int) -> AnchoredCheckpoint | None:
        path = self._path(size)
        try:
            note = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise AnchorError(f"{self.name}: cannot read {path}: {error}") from error
        return AnchoredCheckpoint(self.origin, size, note)

    def _sizes(self) -> list[int]:
        try:
            names = os.listdir(self._folder)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise AnchorError(f"{self.name}: cannot list {self._folder}: {error}") from error
        return sorted(int(n) for n in names if len(n) == _DIGITS and n.isascii() and n.isdigit())

    def latest(self) -> AnchoredCheckpoint | None:
        sizes = self._sizes()
        return self.fetch(sizes[-1]) if sizes else None

    def checkpoints(self) -> Iterator[AnchoredCheckpoint]:
        for size in self._sizes():
            found = self.fetch(size)
            if found is not None:
                yield found

"""Trusted keys with validity windows, and opening a checkpoint against them.

A log rotates its keys: each log key (note key, type 0x01) and each clock key (cosignature/v1,
type 0x04) is valid from one moment to another, both inclusive, in POSIX seconds; the current key
has no end. A checkpoint's time is the timestamp of a trusted clock key's cosignature, and counts
only when it lies inside that clock key's window. A checkpoint is accepted when a log key whose
window holds that time signed it. Keys given without a window (a bare `--key`) are valid at any
time, and then an unattested time is not an error.

The keys file (``runlog keys show``, docs/FORMAT.md "Key rotation and validity windows")::

    runlog-keys/v1
    log <note verifier key> <from> <until>
    clock <cosignature/v1 verifier key> <from> <until>

with times as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds) and ``-`` for a window still open.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Union, cast

from appliance.core.checkpoint import Checkpoint, CheckpointOriginError
from appliance.core.cosignature import Cosignature, CosignatureVerifier, timestamp_of
from appliance.core.errors import InvalidInput, NoteFormatError, SignatureError, VerificationError
from appliance.core.keys import ALG_ED25519, NoteVerifier, key_type_of
from appliance.core.note import Note, open_note

KEYS_HEADER = "runlog-keys/v1"
OPEN = "-"
MAX_KEYS_FILE_CHARS = 65_536
_SECONDS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_ROLES = {"log": NoteVerifier, "clock": CosignatureVerifier}

KeyVerifier = Union[NoteVerifier, CosignatureVerifier]


class KeysFileError(NoteFormatError):
    """A keys file (or a key's window) is malformed."""


class KeyWindowError(VerificationError):
    """A checkpoint is correctly signed, but not by a key that was valid at its time."""


def format_seconds(seconds: int) -> str:
    """POSIX seconds as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_seconds(text: str, *, what: str = "time") -> int:
    """``YYYY-MM-DDTHH:MM:SSZ`` (a real UTC calendar time, whole seconds) as POSIX seconds."""
    if not isinstance(text, str) or _SECONDS.fullmatch(text) is None:
        raise KeysFileError(f"{what} {str(text)[:40]!r} is not YYYY-MM-DDTHH:MM:SSZ", field=what)
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise KeysFileError(f"{what} {text!r} is not a real UTC time", field=what) from None
    return int(moment.timestamp())


@dataclass(frozen=True)
class KeyWindow:
    """One key and the inclusive window [valid_from, valid_until] in which its signatures count;
    None on either side means unbounded (a key trusted without a window)."""

    verifier: KeyVerifier
    valid_from: int | None = None
    valid_until: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.verifier, (NoteVerifier, CosignatureVerifier)):
            raise KeysFileError("a key window needs a note or cosignature verifier key", field="key")
        for bound in (self.valid_from, self.valid_until):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
                raise KeysFileError("window bounds are POSIX seconds", field="window")
        start, end = self.valid_from, self.valid_until
        if start is not None and end is not None and end < start:
            raise KeysFileError(f"key {self.label} is valid until before it is valid from", field="window")

    @property
    def role(self) -> str:
        return "log" if isinstance(self.verifier, NoteVerifier) else "clock"

    @property
    def label(self) -> str:
        return f"{self.verifier.name}+{self.verifier.key_id.hex()}"

    @property
    def bounded(self) -> bool:
        return self.valid_from is not None or self.valid_until is not None

    def covers(self, seconds: int) -> bool:
        return ((self.valid_from is None or self.valid_from <= seconds)
                and (self.valid_until is None or seconds <= self.valid_until))

    def describe(self) -> str:
        start = "any time" if self.valid_from is None else format_seconds(self.valid_from)
        end = "now (current)" if self.valid_until is None else format_seconds(self.valid_until)
        return f"{start} to {end}"

    def to_line(self) -> str:
        if self.valid_from is None:
            raise KeysFileError(f"key {self.label} has no start of validity to write", field="window")
        until = OPEN if self.valid_until is None else format_seconds(self.valid_until)
        return f"{self.role} {self.verifier.to_text()} {format_seconds(self.valid_from)} {until}"


@dataclass(frozen=True)
class TrustedKeys:
    """The log keys and clock keys a verifier trusts, each with its window (oldest first)."""

    log: tuple[KeyWindow, ...]
    clock: tuple[KeyWindow, ...] = ()

    def __post_init__(self) -> None:
        if not self.log:
            raise KeysFileError("trusted keys need at least one log key", field="keys")
        if any(w.role != "log" for w in self.log) or any(w.role != "clock" for w in self.clock):
            raise KeysFileError("log and clock keys are mixed up", field="keys")
        names = {w.verifier.name for w in self.log}
        if len(names) != 1:
            raise KeysFileError(f"all log keys must carry the log's one name, got {sorted(names)}", field="keys")
        seen = [(w.verifier.name, w.verifier.key_id) for w in (*self.log, *self.clock)]
        if len(set(seen)) != len(seen):
            raise KeysFileError("a key is listed twice", field="keys")

    @classmethod
    def unbounded(cls, log: NoteVerifier, clock: Iterable[CosignatureVerifier] = ()) -> TrustedKeys:
        """Keys trusted at any time (a bare ``--key``)."""
        return cls((KeyWindow(log),), tuple(KeyWindow(c) for c in clock))

    @classmethod
    def from_text(cls, text: object) -> TrustedKeys:
        """Parse a keys file: the header line, then one ``log``/``clock`` line per key; blank lines
        and ``#`` comments are ignored."""
        if not isinstance(text, str) or len(text) > MAX_KEYS_FILE_CHARS:
            raise KeysFileError(f"a keys file is text of at most {MAX_KEYS_FILE_CHARS} characters", field="keys")
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not lines or lines[0][1].strip() != KEYS_HEADER:
            raise KeysFileError(f"a keys file starts with the line {KEYS_HEADER!r}", field="keys")
        windows = [window_from_words(line.split(), f"keys file line {n}") for n, line in lines[1:]]
        return cls(tuple(w for w in windows if w.role == "log"), tuple(w for w in windows if w.role == "clock"))

    def to_text(self) -> str:
        return "".join(f"{line}\n" for line in (KEYS_HEADER, *(w.to_line() for w in (*self.log, *self.clock))))

    @property
    def origin(self) -> str:
        return self.log[0].verifier.name

    @property
    def current_log(self) -> NoteVerifier:
        """The log key with the latest start (the last listed among equals)."""
        latest = max(range(len(self.log)), key=lambda i: (self.log[i].valid_from or 0, i))
        return cast(NoteVerifier, self.log[latest].verifier)

    @property
    def bounded(self) -> bool:
        return any(w.bounded for w in (*self.log, *self.clock))


def window_from_words(words: list[str], where: str) -> KeyWindow:
    """``<role> <key> <from> <until>`` split into words: one key and its window."""
    if len(words) != 4 or words[0] not in _ROLES:
        raise KeysFileError(f"{where}: expected 'log|clock <key> <from> <until>'", field="keys")
    role, text, start, end = words
    try:
        kind = key_type_of(text)
        verifier = (NoteVerifier if kind == ALG_ED25519 else CosignatureVerifier).from_text(text)
    except InvalidInput as error:
        raise KeysFileError(f"{where}: {error}", field="keys") from None
    if not isinstance(verifier, _ROLES[role]):
        raise KeysFileError(f"{where}: a {role} key must be a "
                            f"{'note (type 0x01)' if role == 'log' else 'cosignature/v1 (type 0x04)'} key",
                            field="keys")
    until = None if end == OPEN else parse_seconds(end, what=f"{where}: until")
    return KeyWindow(verifier, parse_seconds(start, what=f"{where}: from"), until)


@dataclass(frozen=True)
class TrustedCheckpoint:
    """A checkpoint signed by a log key valid at its time: which log keys signed it (`log_keys`,
    those whose window holds the time), its attested time (None when unattested and allowed), and
    every verified cosignature (clock keys and witnesses)."""

    checkpoint: Checkpoint
    log_keys: tuple[KeyWindow, ...]
    signed_at: int | None
    cosignatures: tuple[Cosignature, ...]
    note: Note


def open_trusted_checkpoint(message: bytes | str, trusted: TrustedKeys, *, origin: str,
                            witnesses: Iterable[CosignatureVerifier] = ()) -> TrustedCheckpoint:
    """Open a signed checkpoint with keys that rotate: signatures first (every trusted log and clock
    key, and `witnesses`), then the body and the origin, then the windows.

    The time is the first cosignature by a trusted clock key whose window holds it. Raises
    `KeyWindowError` when the log keys that signed were not valid at that time, or when a log key
    with a window signed but no trusted clock key attests a time inside its own window; the usual
    `SignatureError`, `NoteFormatError`, `CheckpointOriginError` otherwise."""
    clocks = {(w.verifier.name, w.verifier.key_id): w for w in trusted.clock}
    logs = {(w.verifier.name, w.verifier.key_id): w for w in trusted.log}
    others = [w for w in witnesses if (w.name, w.key_id) not in clocks]
    note = open_note(message, [w.verifier for w in (*trusted.log, *trusted.clock)] + others)
    signed_by = [logs[(s.name, s.key_id)] for s in note.verified if (s.name, s.key_id) in logs]
    if not signed_by:
        labels = ", ".join(w.label for w in trusted.log)
        raise SignatureError(f"checkpoint is not signed by the log key {labels}" if len(trusted.log) == 1
                             else f"checkpoint is not signed by any of the trusted log keys {labels}")
    checkpoint = Checkpoint.from_text(note.text)
    if checkpoint.origin != origin:
        raise CheckpointOriginError(origin, checkpoint.origin)
    cosignatures = tuple(Cosignature(s.name, s.key_id, timestamp_of(s.signature)) for s in note.verified
                         if (s.name, s.key_id) not in logs)
    signed_at, stale = None, None
    for cosignature in cosignatures:
        clock = clocks.get((cosignature.name, cosignature.key_id))
        if clock is None:
            continue
        if clock.covers(cosignature.timestamp):
            signed_at = cosignature.timestamp
            break
        stale = stale or (clock, cosignature.timestamp)
    valid = tuple(w for w in signed_by if signed_at is not None and w.covers(signed_at) or not w.bounded)
    if not valid:
        raise KeyWindowError(_window_message(signed_by, signed_at, stale))
    return TrustedCheckpoint(checkpoint, valid, signed_at, cosignatures, note)


def _window_message(signed_by: list[KeyWindow], signed_at: int | None,
                    stale: tuple[KeyWindow, int] | None) -> str:
    keys = "; ".join(f"{w.label}, valid {w.describe()}" for w in signed_by)
    if signed_at is None and stale is not None:
        clock, when = stale
        return (f"checkpoint time {format_seconds(when)} is attested by clock key {clock.label}, valid "
                f"{clock.describe()}: outside its validity window, so the time of this checkpoint signed by "
                f"{keys} is not proven (a retired clock key was used after its window ended)")
    if signed_at is None:
        return (f"checkpoint signed by {keys}, but no trusted clock key attests its time, so it cannot be shown "
                "that the key was valid when it signed")
    late = all(w.valid_until is not None and signed_at > w.valid_until for w in signed_by)
    what = "after its validity window ended (a retired key)" if late else "outside its validity window"
    return f"checkpoint signed at {format_seconds(signed_at)} by {keys}: {what}"

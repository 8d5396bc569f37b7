"""The two hash chains: `prev` links every entry to the one before it in the whole log, and
`run_prev` links the entries of one run (one trace_id).

Both checks stream: the global check keeps one entry of look-ahead, the run check one small
record per run. A break raises `ChainError(seq, reason)` where reason is one of `REASONS`;
docs/FORMAT.md ("Hash chains") says which seq each reason reports.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from appliance.core.entry import Entry, decode_entry
from appliance.core.errors import ChainError, EntryError, InvalidInput
from appliance.core.hashing import HASH_SIZE, sha256

REASONS = frozenset({"edited", "missing", "inserted", "reordered", "truncated", "forked", "malformed"})

# An entry as the store hands it over: its canonical bytes, or (bytes, recorded entry hash).
ChainItem = bytes | tuple[bytes, bytes]


class RunChainError(ChainError):
    """A run's own chain (run_seq / run_prev / final) is broken."""

    def __init__(self, message: str, *, seq: int, reason: str, trace_id: str, run_seq: int) -> None:
        super().__init__(f"trace {trace_id} run_seq {run_seq}: {message}", seq=seq, reason=reason)
        self.trace_id = trace_id
        self.run_seq = run_seq


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The global chain after `size` entries: `head_hash` is the last entry's hash (None if empty)."""

    size: int
    head_hash: bytes | None

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 0:
            raise InvalidInput("chain head size must be an integer >= 0", field="size")
        if self.size == 0:
            if self.head_hash is not None:
                raise InvalidInput("an empty chain has no head hash", field="head_hash")
        elif type(self.head_hash) is not bytes or len(self.head_hash) != HASH_SIZE:
            raise InvalidInput("chain head hash must be 32 bytes", field="head_hash")


@dataclass(frozen=True, slots=True)
class RunState:
    """One run after its verified entries: `count` entries, the last one's hash and global seq.

    `closed` means the last entry was `final`, so `count` is the run's committed step count.
    """

    trace_id: str
    count: int
    head: bytes | None
    closed: bool
    last_seq: int | None


def _hex(digest: bytes | None) -> str:
    return "null" if digest is None else digest.hex()


class _Read(NamedTuple):
    entry: Entry | None
    digest: bytes
    problem: tuple[str, str] | None  # (reason, message) to raise once this item's turn comes


def _read(item: ChainItem) -> _Read:
    recorded = None
    if type(item) is tuple and len(item) == 2:
        item, recorded = item
    if not isinstance(item, (bytes, bytearray, memoryview)):
        return _Read(None, b"", ("malformed", f"expected entry bytes, got {type(item).__name__}"))
    data = bytes(item)
    digest = sha256(data)
    try:
        entry = decode_entry(data)
    except EntryError as error:
        entry, problem = None, ("malformed", f"not a valid entry: {error}")
    else:
        problem = None
    if recorded is not None and recorded != digest:
        shown = recorded.hex() if isinstance(recorded, bytes) else f"a {type(recorded).__name__}"
        problem = ("edited", f"bytes hash to {digest.hex()}, the store recorded {shown}")
    return _Read(entry, digest, problem)


def _reads(items: Iterable[ChainItem]) -> Iterator[_Read]:
    for item in items:
        yield _read(item)


class RunChains:
    """Checks every run's chain while fed the global stream in seq order; memory O(runs).

    Each entry must continue its run: run_seq one more than the run's last, run_prev equal to
    the hash of the run's last entry, a higher global seq, and nothing after a `final` entry.
    A run first seen with run_seq > 0 is reported `missing` (feed the log from seq 0).
    """

    def __init__(self) -> None:
        # trace_id -> (count, head hash, closed, last global seq); tuples keep the hot path cheap.
        self._runs: dict[str, tuple[int, bytes, bool, int]] = {}

    def add(self, entry: Entry, digest: bytes) -> None:
        """Check one valid entry (with its hash) against its run and record it."""
        trace_id, run_seq, seq = entry.trace_id, entry.run_seq, entry.seq
        run = self._runs.get(trace_id)
        if run is None:
            if run_seq != 0:
                raise RunChainError(
                    f"the run's first entry has run_seq {run_seq}; run_seq 0..{run_seq - 1} are missing",
                    seq=seq, reason="missing", trace_id=trace_id, run_seq=run_seq,
                )
        else:
            count, head, closed, last_seq = run

            def fail(reason: str, message: str) -> RunChainError:
                return RunChainError(message, seq=seq, reason=reason, trace_id=trace_id, run_seq=run_seq)

            if closed:
                raise fail("inserted", f"the run was closed by its final entry at seq {last_seq}")
            if run_seq > count:
                raise fail("missing", f"run_seq {count}..{run_seq - 1} are missing before it")
            if run_seq < count:
                raise fail("inserted", f"run_seq {run_seq} appears again (the run already has {count})")
            if seq <= last_seq:
                raise fail("reordered", f"its seq is not after the run's previous entry at seq {last_seq}")
            if entry.run_prev != head:
                raise RunChainError(
                    f"this entry hashes to {head.hex()} but the run's next entry (seq {seq}) "
                    f"records run_prev {_hex(entry.run_prev)}",
                    seq=last_seq, reason="edited", trace_id=trace_id, run_seq=count - 1,
                )
        self._runs[trace_id] = (run_seq + 1, digest, entry.final, seq)

    def state(self, trace_id: str) -> RunState | None:
        """The run's state so far, or None if no entry of it has been seen."""
        run = self._runs.get(trace_id)
        return None if run is None else RunState(trace_id, *run)

    def states(self) -> Iterator[RunState]:
        """Every run seen so far, in first-seen order."""
        for trace_id, run in self._runs.items():
            yield RunState(trace_id, *run)

    def __len__(self) -> int:
        return len(self._runs)


def verify_global_chain(
    entries: Iterable[ChainItem],
    *,
    start: ChainHead | None = None,
    expected_head: ChainHead | None = None,
    runs: RunChains | None = None,
) -> ChainHead:
    """Check the global chain over `entries` (in seq order) and return the head it reaches.

    Preconditions: `entries` continue from `start` (the empty chain if None); each is canonical
    entry bytes or (bytes, recorded 32-byte entry hash). If `expected_head` is given the chain
    must pass through it (it may continue past it: the log grew). If `runs` is given every
    accepted entry is also fed to it. Memory is constant apart from `runs`.
    Raises `ChainError(seq, reason)` for the first break; see docs/FORMAT.md for which seq.
    """
    size, head = (0, None) if start is None else (start.size, start.head_hash)
    if expected_head is not None:
        if expected_head.size < size:
            raise InvalidInput("expected_head is before start; this stream cannot reach it")
        if expected_head.size == size and expected_head.head_hash != head:
            raise ChainError("start and expected_head differ at the same size", seq=size - 1, reason="forked")
    check_at = expected_head.size if expected_head is not None else -1
    reads = _reads(entries)
    current = next(reads, None)
    while current is not None:
        upcoming = next(reads, None)  # one entry of look-ahead tells a swap from a gap
        entry, problem = current.entry, current.problem
        if entry is None or problem is not None:
            reason, message = problem or ("malformed", "unreadable entry")
            raise ChainError(message, seq=size, reason=reason)
        if entry.seq != size:
            if entry.seq < size:
                raise ChainError(f"an extra entry claims seq {entry.seq} again", seq=entry.seq, reason="inserted")
            if upcoming is not None and upcoming.entry is not None and size <= upcoming.entry.seq < entry.seq:
                raise ChainError(
                    f"seq {entry.seq} comes before seq {upcoming.entry.seq}", seq=size, reason="reordered"
                )
            raise ChainError(f"the next entry present has seq {entry.seq}", seq=size, reason="missing")
        if entry.prev != head:
            raise ChainError(
                f"this entry hashes to {_hex(head)} but the next entry (seq {size}) records prev "
                f"{_hex(entry.prev)}",
                seq=size - 1, reason="edited",
            )
        if runs is not None:
            runs.add(entry, current.digest)
        head = current.digest
        size += 1
        if size == check_at and expected_head is not None and head != expected_head.head_hash:
            raise ChainError(
                f"entry hashes to {head.hex()}, the known head is {_hex(expected_head.head_hash)}",
                seq=size - 1, reason="forked",
            )
        current = upcoming
    if expected_head is not None and size < expected_head.size:
        raise ChainError(
            f"the log ends after {size} entries; the known head has {expected_head.size}", seq=size, reason="truncated"
        )
    return ChainHead(size, head)


def verify_run_chain(entries: Iterable[ChainItem], *, trace_id: str | None = None) -> RunState:
    """Check the entries of one run (in seq order, from run_seq 0) and return the run's state.

    Preconditions: `entries` are canonical bytes or (bytes, recorded hash); all must carry
    `trace_id` (or the first entry's, if None). A closed run proves its step count; an open one
    proves only that no entry is missing before its last. Raises `ChainError` (a
    `RunChainError` for run-level breaks); for unreadable bytes seq is the claimed seq if
    readable, else one past the last verified entry.
    """
    if trace_id is not None and type(trace_id) is not str:
        raise InvalidInput(f"trace_id must be a string or None, got {type(trace_id).__name__}", field="trace_id")
    chains = RunChains()
    count, last_seq = 0, -1
    reads = _reads(entries)
    current = next(reads, None)
    while current is not None:
        upcoming = next(reads, None)
        entry, problem = current.entry, current.problem
        if entry is None or problem is not None:
            reason, message = problem or ("malformed", "unreadable entry")
            raise ChainError(message, seq=entry.seq if entry is not None else last_seq + 1, reason=reason)
        if trace_id is None:
            trace_id = entry.trace_id
        if entry.trace_id != trace_id:
            raise RunChainError(
                f"an entry of trace {entry.trace_id} is spliced into this run",
                seq=entry.seq, reason="inserted", trace_id=trace_id, run_seq=entry.run_seq,
            )
        try:
            chains.add(entry, current.digest)
        except RunChainError as error:
            nxt = upcoming.entry if upcoming is not None else None
            if (
                error.reason == "missing"
                and nxt is not None
                and nxt.trace_id == trace_id
                and count <= nxt.run_seq < entry.run_seq
            ):
                raise RunChainError(
                    f"run_seq {entry.run_seq} comes before run_seq {nxt.run_seq}",
                    seq=nxt.seq, reason="reordered", trace_id=trace_id, run_seq=nxt.run_seq,
                ) from None
            raise
        count, last_seq = entry.run_seq + 1, entry.seq
        current = upcoming
    if trace_id is None:
        raise InvalidInput("no entries and no trace_id: nothing to verify")
    return chains.state(trace_id) or RunState(trace_id, 0, None, False, None)

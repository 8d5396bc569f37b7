"""The single writer: one thread owns the write connection and commits appends in groups.

Requests queue up while a commit is in flight; the next group takes everything queued (up to a
bound) and commits it in one `BEGIN IMMEDIATE` transaction, so many concurrent requests share one
fsync. Each request's future resolves only after its group's COMMIT returned, i.e. when the append
is durable under `synchronous=FULL`. A request with an invalid event fails alone; a failed commit
(disk full, read-only) fails its whole group and rolls the sequencer back, so nothing is half
written and the next group continues the chain where the store really ends.
"""

import asyncio
import json
import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appliance.core.errors import EntryError, InvalidInput, RunlogError
from appliance.core.note import Signer
from appliance.core.receipt import ReceiptSigner
from appliance.core.sequencer import Appended, Event, RunHead, Sequencer
from appliance.core.timefmt import format_utc
from appliance.store.db import connect, migrate
from appliance.store.errors import IdempotencyConflict, StoreUnavailable
from appliance.store.startup import restore_log
from appliance.store.tiles import TileCollector
from appliance.store.wal import WalReserve

log = logging.getLogger("runlog.writer")

MAX_GROUP_EVENTS = 20_000
DISK_FULL_BYTES = 1024 * 1024  # less free than this after a failed commit: said to be full
_STOP = object()
_Waiter = Future | asyncio.Future


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One HTTP request's events, appended all or nothing."""

    events: list[Event]
    source: str
    idempotency_key: str | None = None
    request_hash: bytes = b""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What the producer gets back: where its entries landed and the signed receipt."""

    first_seq: int
    entry_hashes: tuple[bytes, ...]
    received_at: str
    receipt: str
    replayed: bool = False

    def to_json(self) -> str:
        return json.dumps({"first_seq": self.first_seq, "entry_hashes": [h.hex() for h in self.entry_hashes],
                           "received_at": self.received_at, "receipt": self.receipt}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "AppendResult":
        data = json.loads(text)
        return cls(data["first_seq"], tuple(bytes.fromhex(h) for h in data["entry_hashes"]), data["received_at"],
                   data["receipt"], replayed=True)


_INSERT_ENTRY = "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Runs are keyed by their first entry's seq (`run`), which grows with time: the rows of runs that
# are active together, and their run_entries rows, sit on neighbouring pages.
_INSERT_RUN_ENTRY = "INSERT INTO run_entries (run, run_seq, seq) VALUES (?, ?, ?)"
# A run's row: inserted with its first entry; afterwards an append changes only the columns below,
# none of them in a secondary index (trace_id, status, source), so SQLite leaves those alone.
_INSERT_RUN = """
INSERT INTO runs (first_seq, trace_id, count, head, last_seq, started_at, updated_at, first_ts, last_ts,
                  source, status, closed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_EXTEND_RUN = "UPDATE runs SET count = ?, head = ?, last_seq = ?, updated_at = ?, last_ts = ? WHERE first_seq = ?"
# A failed step or a final entry changes the status too (and failed stays failed).
_SETTLE_RUN = """
UPDATE runs SET count = ?, head = ?, last_seq = ?, updated_at = ?, last_ts = ?, closed = ?,
    status = CASE WHEN status = 'failed' THEN 'failed' ELSE ? END
WHERE first_seq = ?
"""
_INSERT_IDEMPOTENCY = "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)"
_RUN_HEADS = "SELECT trace_id, count, head, last_seq, closed, first_seq FROM runs WHERE trace_id IN (%s)"
_RUN_HEADS_CHUNK = 500


def _group_rows(appended: list[Appended], heads: dict[str, RunHead]) -> tuple[Iterable[tuple], ...]:
    """A group's rows: (`entries` rows, `run_entries` rows, then the `runs` writes, one per trace
    touched rather than one per entry: INSERT rows of new runs, plain UPDATE rows, UPDATE rows that
    set the status). `heads` are the group's new run heads (they carry each run's key, its first
    seq). A trace's first entry in the group gives the values a new run starts with (its run_seq is
    0 exactly when the run has no row yet), its last the head; the run is failed if any step failed.
    The per-entry rows are generated as executemany binds them, so a group does not hold two
    tuples per entry (each would count toward a garbage collection; bound and dropped, none does)."""
    first: dict[str, Appended] = {}
    last: dict[str, Appended] = {}
    failed: set[str] = set()
    for item in appended:
        trace_id = item.event.trace_id
        if trace_id not in first:
            first[trace_id] = item
        last[trace_id] = item
        if item.event.status == "failed":
            failed.add(trace_id)
    new, extended, settled = [], [], []
    for trace_id, item in last.items():
        run, start, e = heads[trace_id].first_seq, first[trace_id], item.event
        final = int(e.final)
        status = "failed" if trace_id in failed else ("succeeded" if final else "running")
        if start.run_seq == 0:
            new.append((run, trace_id, item.run_seq + 1, item.entry_hash, item.seq, start.received_at,
                        item.received_at, start.event.ts, e.ts, start.event.source, status, final))
        elif final or status == "failed":
            settled.append((item.run_seq + 1, item.entry_hash, item.seq, item.received_at, e.ts, final, status, run))
        else:
            extended.append((item.run_seq + 1, item.entry_hash, item.seq, item.received_at, e.ts, run))
    return _entry_rows(appended), _run_entry_rows(appended, heads), new, extended, settled


def _entry_rows(appended: list[Appended]) -> Iterator[tuple]:
    for item in appended:
        e = item.event
        yield (item.seq, e.trace_id, item.run_seq, e.step, e.status, int(e.final), e.ts, item.received_at, e.source,
               item.data, item.entry_hash)


def _run_entry_rows(appended: list[Appended], heads: dict[str, RunHead]) -> Iterator[tuple]:
    for item in appended:
        yield heads[item.event.trace_id].first_seq, item.run_seq, item.seq


class Writer:
    """Owns the write connection; `append` from any thread or event loop."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        origin: str,
        signer: Signer,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        synchronous: str = "FULL",
    ) -> None:
        self._db_path, self._clock = db_path, clock
        self._receipts = ReceiptSigner(origin, signer)
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._runs_cache: dict[str, RunHead] = {}
        self._overlay: dict[str, RunHead] = {}
        self._fetched: dict[str, RunHead | None] = {}  # this group's uncached runs, read at its start
        self._last_received_at = ""
        self.commits = 0
        # (time.monotonic(), message) of the last failed commit, None once a commit succeeds.
        self.last_failure: tuple[float, str] | None = None
        self.last_group_events = 0
        # Told each commit's number of new entries, in the writer thread: keep it quick (/metrics).
        self.on_commit: Callable[[int], None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, verify and restore the log's head, and start the writer thread.

        Raises `StoreCorrupt` (naming the first bad seq) instead of continuing a broken log."""
        self._conn = connect(self._db_path, synchronous=self._synchronous)
        # A group of 1,000 events of 1,000 runs dirties hundreds of pages of runs and run_entries,
        # mostly the same ones group after group: a 64 MiB page cache keeps them (SQLite's 2 MiB
        # default re-read them from the OS). The WAL keeps SQLite's default checkpoint (~4 MiB),
        # well inside its reserve (below); a larger checkpoint needs a larger reserve.
        self._conn.execute("PRAGMA cache_size = -65536")
        migrate(self._conn)
        restored = restore_log(self._conn)
        self._sequencer = Sequencer(self._lookup_run, frontier=restored.frontier, head_hash=restored.head_hash)
        self._last_received_at = restored.last_received_at
        self._tiles = TileCollector.resume(self._conn, restored.frontier.size)
        # Commits overwrite room the WAL already has instead of growing it: an aborted ext4 journal
        # can drop a size extension whose fdatasync returned 0 (appliance/store/wal.py).
        self._wal = WalReserve(self._conn, self._db_path)
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="runlog-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, commit everything already queued, then close the connection."""
        if self._thread is None:
            return
        self._accepting = False
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        self._conn.close()

    @property
    def running(self) -> bool:
        return self._accepting and self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the next group commit."""
        return self._queue.qsize()

    @property
    def size(self) -> int:
        return self._sequencer.size

    def root(self) -> bytes:
        return self._sequencer.root()

    # -- submitting --------------------------------------------------------------------------

    def submit(self, request: AppendRequest) -> "Future[AppendResult]":
        future: Future[AppendResult] = Future()
        if not self._accepting:
            future.set_exception(StoreUnavailable("the appliance is shutting down; retry shortly"))
            return future
        self._queue.put((request, future))
        return future

    async def append(self, request: AppendRequest) -> AppendResult:
        return await self.enqueue(request)

    def enqueue(self, request: AppendRequest) -> "asyncio.Future[AppendResult]":
        """`append` without the coroutine: the future of the running event loop that the group
        commit resolves (one call_soon_threadsafe per group and loop, see _settle; cheaper than a
        concurrent Future wrapped per request). The worker link answers from it without a task."""
        if not self._accepting:
            raise StoreUnavailable("the appliance is shutting down; retry shortly")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.put((request, future))
        return future

    def append_sync(self, request: AppendRequest, timeout: float | None = 60.0) -> AppendResult:
        return self.submit(request).result(timeout)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            group: list[tuple[AppendRequest, _Waiter]] = []
            item = self._queue.get()
            events = 0
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    group.append(item)
                    events += len(item[0].events)
                if events >= MAX_GROUP_EVENTS:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if group:
                self._commit_group(group)

    def _fetch_run_heads(self, group: list[tuple[AppendRequest, _Waiter]]) -> None:
        """Read the heads of the group's runs that are not cached, a few hundred per query (a
        group of new runs would otherwise cost a point query each); runs without a row are new."""
        cached, fetched = self._runs_cache, self._fetched
        fetched.clear()
        for request, _ in group:
            for event in request.events:
                if event.trace_id not in cached and type(event.trace_id) is str:
                    fetched[event.trace_id] = None
        missing = list(fetched)
        for start in range(0, len(missing), _RUN_HEADS_CHUNK):
            chunk = missing[start:start + _RUN_HEADS_CHUNK]
            query = _RUN_HEADS % ",".join("?" * len(chunk))
            for trace_id, count, head, last_seq, closed, first_seq in self._conn.execute(query, chunk):
                fetched[trace_id] = RunHead(count, head, last_seq, bool(closed), first_seq)

    def _lookup_run(self, trace_id: str) -> RunHead | None:
        head = self._overlay.get(trace_id) or self._runs_cache.get(trace_id)
        if head is not None or trace_id in self._fetched:
            return head or self._fetched[trace_id]
        row = self._conn.execute("SELECT count, head, last_seq, closed, first_seq FROM runs WHERE trace_id = ?",
                                 (trace_id,)).fetchone()
        return None if row is None else RunHead(row[0], row[1], row[2], bool(row[3]), row[4])

    def _received_at(self) -> str:
        # received_at never goes backwards in seq order, even if the clock does: daily roots
        # ("every entry received before 00:00 UTC") rely on it.
        now = format_utc(self._clock().astimezone(timezone.utc))
        self._last_received_at = max(now, self._last_received_at)
        return self._last_received_at

    def _commit_group(self, group: list[tuple[AppendRequest, _Waiter]]) -> None:
        received_at = self._received_at()
        frontier, head_hash = self._sequencer.frontier, self._sequencer.head_hash
        outcomes: list[AppendResult | BaseException] = []
        rows = _GroupRows()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._fetch_run_heads(group)
            for request, _ in group:
                outcomes.append(self._apply(request, received_at, rows))
            if rows.accepted:
                outcomes = self._sign_receipts(received_at, rows, outcomes)
            entries, run_entries, new_runs, extended_runs, settled_runs = _group_rows(rows.appended, self._overlay)
            self._conn.executemany(_INSERT_ENTRY, entries)
            self._conn.executemany(_INSERT_RUN_ENTRY, run_entries)
            for statement, values in ((_INSERT_RUN, new_runs), (_EXTEND_RUN, extended_runs),
                                      (_SETTLE_RUN, settled_runs), (_INSERT_IDEMPOTENCY, rows.idempotency)):
                if values:  # most groups have none of some kinds: no statement lookup for them
                    self._conn.executemany(statement, values)
            self._tiles.flush(self._conn)
            self._conn.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 - any failure must roll back and fail the group, not the thread
            if isinstance(error, (sqlite3.Error, OSError)):
                log.error("commit of %d requests failed: %s", len(group), error)
            else:
                log.exception("unexpected error while committing %d requests", len(group))
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed")
            self._sequencer = Sequencer(self._lookup_run, frontier=frontier, head_hash=head_hash)
            self._tiles.reset()
            self._overlay.clear()
            reason = f"{error}{self._disk_full_hint()}"
            failure = StoreUnavailable(f"the store could not commit: {reason}")
            self.last_failure = (time.monotonic(), reason)
            _settle([(waiter, failure) for _, waiter in group])
            return
        try:  # the group is durable now: nothing below may fail it
            self._wal.after_commit()
        except Exception:  # noqa: BLE001 - best effort, as the reserve itself is
            log.exception("could not check the WAL's reserve after a commit")
        for trace_id, head in self._overlay.items():
            if head.closed:  # takes no more events; the runs table answers the rare late one (soak: RSS +10% -> flat)
                self._runs_cache.pop(trace_id, None)
            else:
                self._runs_cache[trace_id] = head
        if len(self._runs_cache) > 100_000:
            self._runs_cache.clear()
        self._overlay.clear()
        self.commits += 1
        self.last_failure = None
        self.last_group_events = len(rows.appended)
        if self.on_commit is not None:
            self.on_commit(self._sequencer.size - frontier.size)
        _settle([(waiter, outcome) for (_, waiter), outcome in zip(group, outcomes)])

    def _disk_full_hint(self) -> str:
        """Said after a failed commit when the store's disk has no room left: SQLite then often
        reports "disk I/O error" (extending its -shm file failed) instead of "disk is full", and
        the WAL's reserve (appliance/store/wal.py) makes that the usual case."""
        try:
            free = shutil.disk_usage(Path(self._db_path).parent).free
        except OSError:
            return ""
        return f" (the disk holding the store has {free:,} bytes free)" if free < DISK_FULL_BYTES else ""

    def _apply(self, request: AppendRequest, received_at: str,
               rows: "_GroupRows") -> "_Accepted | AppendResult | RunlogError":
        """Sequence one request (all or nothing) and stage its rows; `_sign_receipts` finishes it."""
        if not request.events:
            return InvalidInput("a request must carry at least one event", field="events")
        key = (request.source, request.idempotency_key) if request.idempotency_key else None
        if key is not None:
            earlier = rows.idempotent.get(key)
            if earlier is None:
                row = self._conn.execute("SELECT request_hash, response FROM idempotency WHERE source = ? AND key = ?",
                                         key).fetchone()
                earlier = None if row is None else (row[0], AppendResult.from_json(row[1]))
            if earlier is not None:
                if earlier[0] != request.request_hash:
                    return IdempotencyConflict(f"Idempotency-Key {request.idempotency_key!r} was already used "
                                               "with different content")
                return earlier[1]  # an AppendResult, or the _Accepted of a request earlier in this group
        try:
            appended, touched = self._sequencer.extend(request.events, received_at, self._tiles.on_node)
        except EntryError as error:
            return error
        rows.appended.extend(appended)
        self._overlay.update(touched)
        accepted = _Accepted(appended[0].seq, tuple(item.entry_hash for item in appended), key, request.request_hash)
        rows.accepted.append(accepted)
        if key is not None:
            rows.idempotent[key] = (request.request_hash, accepted)
        return accepted

    def _sign_receipts(self, received_at: str, rows: "_GroupRows",
                       outcomes: list["_Accepted | AppendResult | RunlogError"]) -> list[AppendResult | RunlogError]:
        """The group's receipts under one signature (core/receipt.py), its idempotency rows, and
        each request's result; a retry within the group gets its original's as a replay."""
        receipts = self._receipts.sign_batch(received_at, [(a.first_seq, a.entry_hashes) for a in rows.accepted])
        for accepted, receipt in zip(rows.accepted, receipts):
            accepted.result = AppendResult(accepted.first_seq, accepted.entry_hashes, received_at, receipt)
            if accepted.key is not None:
                response = accepted.result.to_json()
                rows.idempotency.append((*accepted.key, accepted.request_hash, response, received_at))
                accepted.replay = AppendResult.from_json(response)
        finished: list[AppendResult | RunlogError] = []
        originals: set[_Accepted] = set()
        for outcome in outcomes:
            if isinstance(outcome, _Accepted):
                if outcome in originals:
                    outcome = outcome.replay
                else:
                    originals.add(outcome)
                    outcome = outcome.result
            finished.append(outcome)
        return finished


class _Accepted:
    """A request the group accepted, until its receipt is signed with the group's."""

    __slots__ = ("first_seq", "entry_hashes", "key", "request_hash", "result", "replay")

    def __init__(self, first_seq: int, entry_hashes: tuple[bytes, ...], key: tuple[str, str] | None,
                 request_hash: bytes) -> None:
        self.first_seq, self.entry_hashes, self.key, self.request_hash = first_seq, entry_hashes, key, request_hash
        self.result: AppendResult | None = None
        self.replay: AppendResult | None = None  # what a retry with the same key gets


class _GroupRows:
    """What one group commit inserts, staged request by request: one executemany per table."""

    __slots__ = ("appended", "idempotency", "idempotent", "accepted")

    def __init__(self) -> None:
        self.appended: list[Appended] = []
        self.idempotency: list[tuple] = []
        self.idempotent: dict[tuple[str, str], tuple[bytes, "_Accepted | AppendResult"]] = {}
        self.accepted: list[_Accepted] = []


def _settle(outcomes: list[tuple[_Waiter, AppendResult | BaseException]]) -> None:
    """Resolve the waiters: concurrent futures here, asyncio futures with one thread-safe call per
    event loop (each call writes to the loop's self-pipe to wake it)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
    for waiter, outcome in outcomes:
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, outcome))
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
    for loop, waiting in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, waiting)
        except RuntimeError:  # the loop was closed: nobody is waiting any more
            pass


def _settle_on_loop(waiting: list[tuple[asyncio.Future, Any]]) -> None:
    for future, outcome in waiting:
        if future.done():  # the request was cancelled (client went away); its append stands
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

"""What an HTTP worker process holds instead of the primary's writer, checkpointer, outbox, limiter
and replay guard: stand-ins with the same interface that ask the primary over the link.

The primary pushes its state (`status`) a few times a second, so health and metrics read a
mirror instead of asking; appends, on-demand checkpoints, failed logins, Slack signatures and
the request metrics of all workers are asked for.
"""

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from appliance.slack.signing import SlackSignatureError
from appliance.store.checkpoints import StoredCheckpoint, checkpoint_at
from appliance.store.errors import StoreUnavailable
from appliance.store.writer import AppendRequest, AppendResult
from appliance.web.instruments import LATENCY_BUCKETS, Histogram, Instruments
from appliance.web.rate_limit import FailureLimiter
from appliance.workers import wire
from appliance.workers.link import LinkLost, Peer, connect

STATUS_INTERVAL = 0.25  # seconds between the primary's status pushes
STALE_AFTER = 3.0  # a mirror older than this says the writer is not running
BLOCKING_CALL_SECONDS = 30.0


class PrimaryLink:
    """The worker's end of the link, and the primary's state as last pushed."""

    def __init__(self, instruments: "SharedInstruments") -> None:
        self.instruments = instruments
        self.status: dict[str, Any] = {}
        self.status_at = float("-inf")
        self.blocked: dict[str, float] = {}  # client key -> monotonic time its block ends
        self.peer: Peer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lost = threading.Event()
        self.on_lost: Any = None  # called (on the event loop) when the primary goes away

    async def connect(self, path: str, index: int) -> None:
        self.loop = asyncio.get_running_loop()
        handlers = {"status": self._on_status, "blocked": self._on_blocked, "requests": self._requests}
        _, self.peer = await connect(lambda: Peer(handlers, self._on_lost), path)
        self.peer.name = f"worker {index}"
        self.peer.notify("hello", index)

    def _on_lost(self, peer: Peer) -> None:
        self.lost.set()
        if self.on_lost is not None:
            self.on_lost()

    def _on_status(self, body: dict[str, Any]) -> None:
        self.status, self.status_at = body, time.monotonic()
        self.instruments.mirror_commits(body["commit_counts"], body["commit_sum"])

    def _on_blocked(self, body: list[Any]) -> None:
        key, seconds = body
        self.blocked[key] = time.monotonic() + seconds

    def _requests(self, body: Any) -> list[Any]:
        return [[*key, histogram.counts, histogram.sum] for key, histogram in self.instruments.local_series()]

    # -- asking ------------------------------------------------------------------------------

    def call(self, op: str, body: Any) -> "asyncio.Future[Any]":
        if self.peer is None:
            raise LinkLost("the appliance's writer process is not reachable; retry shortly")
        return self.peer.call(op, body)

    def call_blocking(self, op: str, body: Any) -> Any:
        """From a thread other than the event loop's (sync routes run in Litestar's thread pool)."""
        if self.loop is None:
            raise LinkLost("the appliance's writer process is not reachable; retry shortly")

        async def ask() -> Any:
            return await self.call(op, body)

        return asyncio.run_coroutine_threadsafe(ask(), self.loop).result(BLOCKING_CALL_SECONDS)

    def call_from_any_thread(self, op: str, body: Any, on_reply: Any = None) -> None:
        """`call` from any thread, without waiting; `on_reply` gets the answer on the event loop."""
        def send() -> None:
            if self.peer is None or not self.peer.connected:
                return
            future = self.peer.call(op, body)
            future.add_done_callback(lambda done: on_reply(done.result())
                                     if on_reply and not done.cancelled() and done.exception() is None else None)

        if self.loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            send()
        else:
            self.loop.call_soon_threadsafe(send)

    @property
    def fresh(self) -> bool:
        return (self.peer is not None and self.peer.connected and not self.lost.is_set()
                and time.monotonic() - self.status_at < STALE_AFTER)


class RemoteWriter:
    """The writer as a worker sees it: appends go to the primary; the rest mirrors its status."""

    on_commit = None  # commits happen in the primary; its pushed status carries the commit histogram

    def __init__(self, link: PrimaryLink) -> None:
        self._link = link

    async def append(self, request: AppendRequest) -> AppendResult:
        return wire.result_from(await self._link.call("append", wire.request_body(request)))

    def refresh(self) -> None:
        """Read the primary's status now instead of its last push (for /metrics). Blocks."""
        self._link._on_status(self._link.call_blocking("status", None))

    def _get(self, name: str, default: Any) -> Any:
        return self._link.status.get(name, default)

    @property
    def running(self) -> bool:
        return self._link.fresh and bool(self._get("running", False))

    @property
    def queue_depth(self) -> int:
        return self._get("queue_depth", 0)

    @property
    def commits(self) -> int:
        return self._get("commits", 0)

    @property
    def last_group_events(self) -> int:
        return self._get("last_group_events", 0)

    @property
    def size(self) -> int:
        return self._get("size", 0)

    @property
    def last_failure(self) -> tuple[float, str] | None:
        failure = self._get("last_failure", None)
        return None if failure is None else (failure[0], failure[1])


class RemoteCheckpointer:
    def __init__(self, link: PrimaryLink, reader: Callable[[], sqlite3.Connection]) -> None:
        self._link, self._reader = link, reader

    def cut_now(self) -> tuple[StoredCheckpoint, bool]:
        """As `Checkpointer.cut_now`, signed by the primary: the checkpoint of every committed entry
        and whether it was signed now. Blocks: call it from a worker thread, not the event loop."""
        size, signed = self._link.call_blocking("cut", None)
        checkpoint = checkpoint_at(self._reader(), size)
        if checkpoint is None:
            raise StoreUnavailable(f"the primary signed checkpoint {size}, but this worker cannot read it")
        return checkpoint, signed


class RemoteOutbox:
    def __init__(self, link: PrimaryLink) -> None:
        self._link = link

    @property
    def running(self) -> bool:
        return self._link.fresh and bool(self._link.status.get("outbox_running", False))


class SharedFailureLimiter(FailureLimiter):
    """The failed-authentication limiter across all workers: this worker counts its own failures
    (so its next answer never races the primary), and the primary counts everyone's and tells
    every worker when an address has run out."""

    link: PrimaryLink | None = None

    def retry_after(self, key: str) -> int | None:
        local = super().retry_after(key)
        until = self.link.blocked.get(key) if self.link is not None else None
        waits = [] if local is None else [local]
        if until is not None:
            remaining = until - time.monotonic()
            if remaining > 0:
                waits.append(max(1, round(remaining + 0.499)))
            else:
                self.link.blocked.pop(key, None)  # type: ignore[union-attr]
        return max(waits, default=None)

    def failed(self, key: str) -> None:
        super().failed(key)
        if self.link is not None:
            link = self.link
            link.call_from_any_thread("auth_failed", key, lambda wait: wait and link._on_blocked([key, wait]))


class SharedReplayGuard:
    """Slack's replay check across all workers: the primary remembers every signature seen."""

    def __init__(self, link: PrimaryLink) -> None:
        self._link = link

    def check(self, signature: str, *, now: float) -> None:
        """As `ReplayGuard.check`; blocks (the Slack routes run in Litestar's thread pool)."""
        if not self._link.call_blocking("replay", [signature, now]):
            raise SlackSignatureError("replay: this signed request was already received")


class SharedInstruments(Instruments):
    """This worker's request histograms, and the whole appliance's when /metrics asks: the sum over
    every worker, asked of the primary, which asks them all."""

    link: PrimaryLink | None = None

    def local_series(self) -> list[tuple[tuple[str, str, str], Histogram]]:
        return super().request_series()

    def request_series(self) -> list[tuple[tuple[str, str, str], Histogram]]:
        if self.link is None:
            return self.local_series()
        series = []
        for route, method, status, counts, total in self.link.call_blocking("metrics", None):  # sorted there
            histogram = Histogram(LATENCY_BUCKETS)
            histogram.counts, histogram.sum = counts, total
            series.append(((route, method, status), histogram))
        return series

    def mirror_commits(self, counts: list[int], total: float) -> None:
        self.commit_sizes.counts, self.commit_sizes.sum = list(counts), total

"""Producers for the reliability suites: N keep-alive HTTP/1.1 connections on one asyncio loop (in
a background thread), each appending one event per request and keeping a ledger of what the
appliance acknowledged.

Raw sockets rather than an HTTP client library: on a 2-core machine shared with the server, the
load generator must cost far less CPU than what it measures. Our server always answers with
Content-Length, so a response is its head and that many bytes.

Every event carries `attrs.id` = "<client>-<n>", so the store can be checked against the ledger:
every acknowledged event present exactly once, at the seq and with the hash its receipt gave.
With `retry=True` (the crash suite) an unacknowledged event is re-sent with the same
Idempotency-Key until acknowledged; without it (the soak) a failure is counted and skipped.
"""

import asyncio
import threading
import time
import uuid
from array import array
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

RUN_STEPS = 20  # each run closes with a final event after this many steps


@dataclass
class ClientLedger:
    """One client's acknowledged events: index n -> seq and entry hash (-1: not acknowledged);
    `sent` is one past the highest index sent, where a later load with this ledger continues."""

    seqs: array = field(default_factory=lambda: array("q"))
    hashes: bytearray = field(default_factory=bytearray)
    sent: int = 0

    def record(self, n: int, seq: int, entry_hash: bytes) -> None:
        while len(self.seqs) <= n:
            self.seqs.append(-1)
            self.hashes.extend(bytes(32))
        self.seqs[n] = seq
        self.hashes[n * 32:(n + 1) * 32] = entry_hash

    def acknowledged(self) -> int:
        return sum(1 for seq in self.seqs if seq >= 0)


@dataclass
class Window:
    """Requests finished in one time window: acknowledged, failed, and latencies in ms."""

    start: float
    acked: int = 0
    failed: int = 0
    latencies: array = field(default_factory=lambda: array("f"))


def percentile(values, fraction: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else None


class Load:
    """`clients` producers against `url`; `start()`, `stop()`, then read `ledgers` and `windows`."""

    def __init__(self, url: str, token: str, clients: int, *, retry: bool = False, window_seconds: float = 10.0,
                 timeout: float = 10.0, ledgers: list[ClientLedger] | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self._head = (f"POST /v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
                      "Content-Type: application/json\r\n")
        self.clients, self.retry, self.timeout = clients, retry, timeout
        self.window_seconds = window_seconds
        self.ledgers = ledgers if ledgers is not None else [ClientLedger() for _ in range(clients)]
        self.windows: list[Window] = []
        self.errors: dict[str, int] = {}
        self.closed_runs: list[str] = []  # trace IDs whose final event was acknowledged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "Load":
        self._started = time.monotonic()
        self.windows = [Window(0.0)]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="reliability-load", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("the load generator did not stop")

    @property
    def acknowledged(self) -> int:
        return sum(w.acked for w in self.windows)

    @property
    def failed(self) -> int:
        return sum(w.failed for w in self.windows)

    # -- the producers -----------------------------------------------------------------------

    def _window(self) -> Window:
        elapsed = time.monotonic() - self._started
        while elapsed >= len(self.windows) * self.window_seconds:
            self.windows.append(Window(len(self.windows) * self.window_seconds))
        return self.windows[-1]

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def _main(self) -> None:
        await asyncio.gather(*(self._client(c) for c in range(self.clients)))

    def _request(self, client: int, n: int, trace_id: str) -> bytes:
        final = n % RUN_STEPS == RUN_STEPS - 1
        event = {"trace_id": trace_id, "step": f"step-{n % RUN_STEPS}", "status": "succeeded" if final else "info",
                 "final": final, "attrs": {"id": f"{client}-{n}"}}
        body = orjson.dumps(event)
        key = f"Idempotency-Key: {client}-{n}\r\n" if self.retry else ""
        return f"{self._head}{key}Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def _client(self, client: int) -> None:
        ledger, connection = self.ledgers[client], None
        n = ledger.sent + (-ledger.sent % RUN_STEPS)  # a continued ledger starts a new run
        trace_id = uuid.uuid4().hex
        while not self._stop.is_set():
            request = self._request(client, n, trace_id)
            ledger.sent = n + 1
            sent = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
                status, body = await asyncio.wait_for(self._exchange(connection, request), self.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as error:
                self._window().failed += 1
                self._error(type(error).__name__)
                if connection is not None:
                    connection[1].close()
                connection = None
                await asyncio.sleep(0.02)
                if not self.retry:
                    n, trace_id = self._next(n, trace_id, closed=False)
                continue
            window = self._window()
            if status in (200, 201):
                receipt = orjson.loads(body)
                ledger.record(n, receipt["first_seq"], bytes.fromhex(receipt["entry_hashes"][0]))
                window.acked += 1
                window.latencies.append((time.perf_counter() - sent) * 1e3)
                n, trace_id = self._next(n, trace_id, closed=True)
                continue
            window.failed += 1
            self._error(f"HTTP {status}")
            if status >= 500:
                await asyncio.sleep(0.02)
            if not (self.retry and status >= 500):  # a 4xx would fail again: count it and move on
                n, trace_id = self._next(n, trace_id, closed=False)
        if connection is not None:
            connection[1].close()

    def _next(self, n: int, trace_id: str, *, closed: bool) -> tuple[int, str]:
        """The next event's index and run: a new run after each run's final step (or its loss)."""
        if n % RUN_STEPS != RUN_STEPS - 1:
            return n + 1, trace_id
        if closed:
            self.closed_runs.append(trace_id)
        return n + 1, uuid.uuid4().hex

    @staticmethod
    async def _exchange(connection, request: bytes) -> tuple[int, bytes]:
        reader, writer = connection
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head[9:12]), await reader.readexactly(length)

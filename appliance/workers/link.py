"""The link between the HTTP worker processes and the primary process that owns the writer.

One Unix stream socket per worker, frames both ways: a 4-byte big-endian length, then a msgpack
array `[kind, id, op, body]`. A REQUEST gets exactly one REPLY or FAILURE with the same id; a
NOTICE gets nothing. Either side may ask (the primary asks the workers for their request
metrics). A runlog error crosses as (type, message, field, index) and is raised again on the
other side as the same type, so a worker answers exactly as the single-process appliance would.
"""

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from itertools import count
from typing import Any, NamedTuple

import msgspec

from appliance.core.errors import EntryError, InvalidInput, RunlogError, TraceContextError
from appliance.core.sequencer import RunClosedError
from appliance.store.errors import IdempotencyConflict, StoreError, StoreUnavailable

log = logging.getLogger("runlog.link")

REQUEST, REPLY, FAILURE, NOTICE = 0, 1, 2, 3
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a 1,000-event batch of 64 KiB attrs each, with room to spare
_LENGTH = struct.Struct(">I")

# The errors that may cross, by name: anything else becomes a plain RuntimeError (an internal error).
_ERRORS: dict[str, type[RunlogError]] = {cls.__name__: cls for cls in (
    RunlogError, InvalidInput, EntryError, TraceContextError, RunClosedError, IdempotencyConflict, StoreError,
    StoreUnavailable)}

Handler = Callable[[Any], Any]  # returns the reply body, an awaitable of it, or a `Later`


class Later(NamedTuple):
    """A handler's reply that is not ready yet: `convert(future.result())` once `future` (of the
    link's event loop) is done, or its error. No task and no second future: the primary answers
    each append straight from the writer's future."""

    future: "asyncio.Future[Any]"
    convert: Callable[[Any], Any]


class LinkLost(StoreUnavailable):
    """The other side of the link went away before answering."""


def abstract_address(name: str) -> str:
    """A Linux abstract socket address: no file to leave behind when the primary is killed, but
    visible to every local user, hence `same_user_only` on the primary's side."""
    return "\0" + name


async def connect(factory: Callable[[], "Peer"], address: str) -> tuple[asyncio.Transport, "Peer"]:
    """Open a link to `address` (a path or an abstract address) on the running loop. The socket is
    connected here and handed over: uvloop's create_unix_connection refuses an abstract address
    (EINVAL), though it serves one and takes a connected socket."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        return await loop.create_unix_connection(factory, sock=sock)  # type: ignore[return-value]
    except BaseException:
        sock.close()
        raise


def _peer_uid(transport: asyncio.BaseTransport) -> int | None:
    sock = transport.get_extra_info("socket")
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except (OSError, AttributeError):
        return None
    return uid


def encode_error(error: BaseException) -> list[Any]:
    name = type(error).__name__ if type(error).__name__ in _ERRORS else ""
    return [name, str(error), getattr(error, "field", None), getattr(error, "index", None)]


def decode_error(body: Any) -> BaseException:
    name, message, field, index = body
    cls = _ERRORS.get(name)
    if cls is None:
        return RuntimeError(f"the primary process failed: {message}")
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    if issubclass(cls, InvalidInput):
        error.field = field  # type: ignore[attr-defined]
    if index is not None:
        error.index = index  # type: ignore[attr-defined]
    return error


class Peer(asyncio.Protocol):
    """One end of a link: sends requests and notices, answers the other side's with `handlers`."""

    def __init__(self, handlers: dict[str, Handler], on_lost: Callable[["Peer"], None] | None = None) -> None:
        self._handlers, self._on_lost = handlers, on_lost
        self._encoder, self._decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
        self._buffer = bytearray()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = count(1)
        self._transport: asyncio.Transport | None = None
        self._out = bytearray()  # frames sent in this turn of the event loop, written together
        self._flushing = False
        self.closed = asyncio.Event()
        self.name = "peer"
        self.same_user_only = False  # the primary's side: refuse processes of other users

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self.same_user_only and _peer_uid(transport) != os.getuid():
            log.error("link: a process of another user connected; refused")
            transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                log.error("link %s: frame of %d bytes refused; closing", self.name, length)
                self.close()
                return
            if len(buffer) - start - 4 < length:
                break
            frame = self._decoder.decode(memoryview(buffer)[start + 4 : start + 4 + length])
            start += 4 + length
            self._dispatch(frame)
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        lost = LinkLost("the appliance's writer process is not reachable; retry shortly")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(lost)
        self._pending.clear()
        self.closed.set()
        if self._on_lost is not None:
            self._on_lost(self)

    # -- sending -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def _send(self, frame: list[Any]) -> None:
        if not self.connected:
            raise LinkLost("the appliance's writer process is not reachable; retry shortly")
        data = self._encoder.encode(frame)
        self._out += _LENGTH.pack(len(data))
        self._out += data
        if not self._flushing:  # one write (one system call) for every frame of this loop turn
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        if self._transport is not None and self._out:
            self._transport.write(bytes(self._out))
        self._out.clear()

    def call(self, op: str, body: Any) -> "asyncio.Future[Any]":
        """Send a request; the future gets the reply body or the other side's error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ident = next(self._ids)
        self._send([REQUEST, ident, op, body])
        self._pending[ident] = future
        return future

    def notify(self, op: str, body: Any) -> None:
        """Send a notice (no answer); dropped silently when the link is down."""
        if self.connected:
            self._send([NOTICE, 0, op, body])

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- receiving ---------------------------------------------------------------------------

    def _dispatch(self, frame: list[Any]) -> None:
        kind, ident, op, body = frame
        if kind == REPLY or kind == FAILURE:
            future = self._pending.pop(ident, None)
            if future is not None and not future.done():
                if kind == REPLY:
                    future.set_result(body)
                else:
                    future.set_exception(decode_error(body))
            return
        handler = self._handlers.get(op)
        if handler is None:
            log.error("link %s: no handler for %r", self.name, op)
            if kind == REQUEST:
                self._answer(ident, FAILURE, encode_error(RuntimeError(f"unknown operation {op!r}")))
            return
        try:
            result = handler(body)
        except Exception as error:  # noqa: BLE001 - the asker gets the error instead of a hang
            self._failed(kind, ident, op, error)
            return
        if type(result) is Later:
            result.future.add_done_callback(partial(self._finished, kind, ident, op, result.convert))
        elif isinstance(result, Awaitable):
            task = asyncio.ensure_future(result)
            task.add_done_callback(partial(self._finished, kind, ident, op, None))
        elif kind == REQUEST:
            self._answer(ident, REPLY, result)

    def _finished(self, kind: int, ident: int, op: str, convert: Callable[[Any], Any] | None,
                  done: "asyncio.Future[Any]") -> None:
        if done.cancelled():
            self._failed(kind, ident, op, LinkLost("the request was cancelled"))
        elif done.exception() is not None:
            self._failed(kind, ident, op, done.exception())  # type: ignore[arg-type]
        elif kind == REQUEST:
            try:
                body = done.result() if convert is None else convert(done.result())
            except Exception as error:  # noqa: BLE001 - the asker gets the error instead of a hang
                self._failed(kind, ident, op, error)
                return
            self._answer(ident, REPLY, body)

    def _failed(self, kind: int, ident: int, op: str, error: BaseException) -> None:
        if not isinstance(error, RunlogError):
            log.error("link %s: %s failed", self.name, op, exc_info=(type(error), error, error.__traceback__))
        if kind == REQUEST:
            self._answer(ident, FAILURE, encode_error(error))

    def _answer(self, ident: int, kind: int, body: Any) -> None:
        try:
            self._send([kind, ident, "", body])
        except LinkLost:
            pass  # the asker is gone; nobody is waiting

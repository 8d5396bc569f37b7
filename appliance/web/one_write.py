"""A response's head and body in one system call.

uvicorn's protocols write a response's status line and headers when the app sends
`http.response.start`, and its body when the app sends `http.response.body`: two `send()`
calls, two TCP segments and two wake-ups of the client for every small answer (strace of an
HTTP worker at 32 clients: head, body, then the request-log line, three writes per request).
`OneWrite`, mixed into the protocol class, hands the protocol a transport that holds back one
write until the next one or the end of the event loop's turn, whichever comes first, and then
writes both together. At most one write is ever held (a streamed response is written as it
comes from its second chunk on, so memory stays bounded), closing writes it first, and the
bytes and their order are unchanged.
"""

import asyncio
from typing import Any


class _HoldOne:
    """The transport, except that `write` keeps one piece until the next write or the loop's turn ends."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop, self._held = transport, loop, b""

    def write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
            self._transport.write(data)
        elif data:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            if not self._transport.is_closing():
                self._transport.write(data)

    def writelines(self, pieces: Any) -> None:
        self.write(b"".join(pieces))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, pause_reading, abort, ...
        return getattr(self._transport, name)


class OneWrite:
    """Mixed into a uvicorn HTTP protocol class (before it in the bases): see the module docstring."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(_HoldOne(transport, asyncio.get_running_loop()))  # type: ignore[misc]

"""A TCP relay on 127.0.0.1 standing between the appliance and an anchor's endpoint, so the suites
can take the endpoint away (in the middle of a request, if they like) and give it back, without
touching the real server behind it (the machine's Postgres is shared with other test runs)."""

import contextlib
import socket
import threading

from tests.e2e.server import free_port


class Relay:
    """A TCP relay on 127.0.0.1 that can be cut (listener and every live connection closed) and
    restored on the same port. An upstream that refuses closes the client, as a dead server would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self.cut_connections = 0
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._requests = 0
        self._request_sent = threading.Condition(self._lock)
        self._listener: socket.socket | None = None

    def start(self) -> "Relay":
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Cut: refuse new connections and reset the live ones wherever they are."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            self._listener.close()
            self._listener = None
        with self._lock:
            self.cut_connections += len(self._pairs)
            for pair in self._pairs:
                for s in pair:
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)  # close() alone leaves a blocked recv() holding it open
                    s.close()
            self._pairs.clear()

    def stop_mid_request(self, skip: int = 0, timeout: float = 30.0) -> bool:
        """Cut just after the `skip + 1`-th client write from now reached the server, while its
        answer is still on the way. False if no request came within `timeout` (cut anyway)."""
        with self._lock:
            target = self._requests + skip + 1
            seen = self._request_sent.wait_for(lambda: self._requests >= target, timeout)
        self.stop()
        return seen

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair, ends = (client, upstream), [2]
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(client, upstream, pair, ends, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, pair, ends, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, pair: tuple, ends: list[int], request: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if request:
                    with self._lock:
                        self._requests += 1
                        self._request_sent.notify_all()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with self._lock:
                ends[0] -= 1
                if ends[0] == 0 and pair in self._pairs:
                    self._pairs.discard(pair)
                    for s in pair:
                        s.close()

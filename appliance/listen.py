"""The listening sockets of `runlog serve`, bound before anything is served.

Binding here (not inside uvicorn) gives one behaviour in both serve modes: a taken port is a
one-line `runlog: cannot listen on ...` and exit status 1, before the first worker starts.
"""

import socket

from appliance.core.errors import RunlogError


class ServeError(RunlogError):
    """The appliance cannot serve (its port is taken, a worker keeps dying): a one-line message."""


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on host:port, sharing it with each other and nobody else."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)[0]
    # SO_REUSEPORT would also share the port with any other listener that set it (another runlog
    # left running): bind once without it first, so a taken port fails here as it would without workers.
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sockets = []
    for _ in range(count):
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets

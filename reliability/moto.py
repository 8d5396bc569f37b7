"""moto's S3 server in a process of its own, on 127.0.0.1, for the reliability suites.

Not `ThreadedMotoServer`, which serves from threads of the caller's process: moto keeps every
model object it ever made in a class-level list (`BaseModel.instances_tracked`, emptied only by a
reset), and its `list_object_versions` deep-copies every version in the bucket on each call, so
each listing adds one tracked copy per stored version that is never freed. A run that lists often
over many checkpoints grows by the square of their number; in a process of its own that memory is
visible (`rss_mb`) and goes when the server stops, instead of staying in the test process for the
rest of the suite, and moto's CPU is not taken from the appliance's threads under the same GIL.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time

from tests.e2e.server import free_port


# moto's `main`, after asking Linux to end the server with the thread that started it (a test
# process killed with SIGKILL would otherwise leave it listening); argv[1] is that process's id.
_SERVE = """import os, signal, sys
if sys.platform == "linux":
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)
from moto.server import main
main(sys.argv[2:])
"""


class MotoProcess:
    """moto's server on a free port, started by the calling thread (which it does not outlive);
    `url`, `rss_mb()`, `stop()`."""

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, str(os.getpid()), "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto's server did not start on port {self.port} "
                                       f"(exit code {self.process.returncode})") from None
                time.sleep(0.05)

    def rss_mb(self) -> float | None:
        """The server's resident memory now, in MiB (None once it has exited or off Linux)."""
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

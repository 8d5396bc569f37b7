"""`runlog serve` with several HTTP worker processes (RUNLOG_WORKERS > 1).

One interpreter runs Python on one core at a time, and a request's HTTP, auth and parsing cost
more than its append, so the appliance spreads HTTP over worker processes and keeps everything
that must be single in this one, the primary: the writer (one chain, one group commit), the
checkpointer, the anchor outbox, the failed-authentication limiter and the Slack replay memory.

The primary binds one listening socket per worker on the same port (SO_REUSEPORT: the kernel
spreads connections over them), starts each worker with its socket, answers them over one Unix
socket link each (an abstract address: nothing on disk; only this user's processes are accepted) (appliance.workers.link), and restarts a worker that dies. On SIGTERM it stops
the workers first (they finish the requests in flight, whose appends it still commits), then
closes the appliance as a single process would: writer drained, final checkpoint, anchors tried.
"""

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from appliance import loops
from appliance.listen import ServeError
from appliance.service import Appliance
from appliance.settings import Settings
from appliance.web.rate_limit import FailureLimiter
from appliance.workers.frozen import freeze_startup_objects
from appliance.workers.link import abstract_address
from appliance.workers.primary import PrimaryService

log = logging.getLogger("runlog.serve")

POLL_SECONDS = 0.2
RESTART_BACKOFF_SECONDS = 1.0
MAX_RESTARTS = 5  # within RESTART_WINDOW_SECONDS: a worker that cannot start stops the appliance
RESTART_WINDOW_SECONDS = 60.0
READY_SECONDS = 60.0


@dataclass
class _Worker:
    index: int
    sock: socket.socket
    process: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)
    down_since: float | None = None


class Supervisor:
    def __init__(self, settings: Settings, appliance: Appliance, sockets: list[socket.socket], graceful: float) -> None:
        self.settings, self.appliance, self.graceful = settings, appliance, graceful
        self.workers = [_Worker(index, sock) for index, sock in enumerate(sockets)]
        self.service = PrimaryService(appliance, FailureLimiter(settings.auth_failure_burst,
                                                                settings.auth_failure_refill))
        self.link_name = f"runlog-link-{os.getpid()}-{secrets.token_hex(8)}"

    def _spawn(self, worker: _Worker) -> None:
        fd = worker.sock.fileno()
        worker.process = subprocess.Popen(
            [sys.executable, "-m", "appliance.workers.worker", "--link", self.link_name, "--fd", str(fd),
             "--index", str(worker.index), "--graceful", str(self.graceful), "--parent", str(os.getpid())],
            pass_fds=(fd,), stdin=subprocess.DEVNULL)
        worker.down_since = None

    def _check(self, worker: _Worker, now: float) -> None:
        """Restart a worker that died, after a pause; give up when one keeps dying."""
        process = worker.process
        if process is None or process.poll() is None:
            return
        if worker.down_since is None:
            worker.down_since = now
            log.error("HTTP worker %d (pid %d) exited with status %s; restarting it",
                      worker.index, process.pid, process.returncode)
        if now - worker.down_since < RESTART_BACKOFF_SECONDS:
            return
        worker.restarts = [at for at in worker.restarts if now - at < RESTART_WINDOW_SECONDS] + [now]
        if len(worker.restarts) > MAX_RESTARTS:
            raise ServeError(f"HTTP worker {worker.index} died {MAX_RESTARTS} times within "
                             f"{RESTART_WINDOW_SECONDS:.0f} s; stopping (its log says why)")
        self._spawn(worker)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = await loop.create_unix_server(self.service.peer, abstract_address(self.link_name))
        status = asyncio.create_task(self.service.broadcast_status())
        try:
            for worker in self.workers:
                self._spawn(worker)
            await self._announce(stop)
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
                except asyncio.TimeoutError:
                    pass
                now = time.monotonic()
                for worker in self.workers:
                    self._check(worker, now)
        finally:
            await self._stop_workers()
            status.cancel()
            server.close()
            for peer in list(self.service.peers):
                peer.close()

    async def _announce(self, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while self.service.workers_connected < len(self.workers) and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.05)
            for worker in self.workers:
                self._check(worker, time.monotonic())
        log.info("workers ready", extra={"fields": {"workers": len(self.workers),
                                                     "connected": self.service.workers_connected}})
        freeze_startup_objects()

    async def _stop_workers(self) -> None:
        """SIGTERM every worker (each finishes its requests in flight within `graceful` seconds),
        keep answering their links meanwhile, then kill what is left."""
        running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.graceful + 1.0
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for process in running:
            if process.poll() is None:
                log.error("HTTP worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()


def serve_with_workers(settings: Settings, appliance: Appliance, sockets: list[socket.socket], graceful: float) -> None:
    """Run the primary, one worker per socket, until SIGTERM or SIGINT; closes `appliance` (drain,
    final checkpoint, anchors)."""
    try:
        loops.run(Supervisor(settings, appliance, sockets, graceful).run(), settings.loop)  # RUNLOG_LOOP, as the workers
    finally:
        appliance.close()

"""One HTTP worker process: `python -m appliance.workers.worker --link PATH --fd N --index I`.

Started by the primary (appliance.workers.supervisor) with the listening socket it bound; serves
the whole app under uvicorn, with the primary's writer, checkpointer, outbox, limiter and replay
memory reached over the link. Exits when the primary goes away: it cannot append without it.
"""

import argparse
import ctypes
import logging
import os
import signal
import socket
from typing import Any

# Only the standard library above: the worker asks to die with the primary before the ~1 s of
# importing the app (see main), so a primary killed during a start leaves no worker behind.

log = logging.getLogger("runlog.worker")
FIRST_STATUS_SECONDS = 10.0
PR_SET_PDEATHSIG = 1


def worker_appliance(settings: Any, link: Any, path: str, index: int):
    import asyncio
    import sqlite3
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from appliance.anchors.config import build_anchors
    from appliance.key_custody import load_signers
    from appliance.service import Appliance
    from appliance.store.db import connect
    from appliance.store.tokens import TokenAuthenticator
    from appliance.workers.link import abstract_address
    from appliance.workers.remote import RemoteCheckpointer, RemoteOutbox, RemoteWriter

    @asynccontextmanager
    async def opened() -> AsyncIterator[Appliance]:
        await link.connect(abstract_address(path), index)
        for _ in range(int(FIRST_STATUS_SECONDS / 0.05)):  # health is right from the first request
            if link.status:
                break
            await asyncio.sleep(0.05)
        signers = load_signers(settings.keys_dir, settings.origin, signing_key_file=settings.signing_key_file)

        def reader() -> sqlite3.Connection:
            return connect(settings.db_path, readonly=True)

        appliance = Appliance(settings, signers.log, signers.clock, RemoteWriter(link),  # type: ignore[arg-type]
                              TokenAuthenticator(reader), build_anchors(settings),
                              RemoteOutbox(link), checkpointer=None)
        appliance.checkpointer = RemoteCheckpointer(link, appliance.reader)  # type: ignore[assignment]
        try:
            yield appliance
        finally:
            appliance.tokens.close()
            if link.peer is not None:
                link.peer.close()

    return opened


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker the moment the primary dies (kill -9 included), so no
    orphan keeps the port, and a restarted appliance can bind it at once."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the link's loss stops the worker instead
    if os.getppid() != parent:  # the primary died before prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runlog-worker")
    parser.add_argument("--link", required=True, help="the primary's abstract socket name")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--graceful", type=float, default=5.0)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    import uvicorn

    from appliance.logs import configure_logging, secrets_of
    from appliance.settings import Settings
    from appliance.web.app import create_app
    from appliance.web.client_limits import server_options
    from appliance.workers.frozen import freeze_startup_objects
    from appliance.workers.remote import PrimaryLink, SharedFailureLimiter, SharedInstruments, SharedReplayGuard

    settings = Settings.from_env()
    sock = socket.socket(fileno=args.fd)
    instruments = SharedInstruments()
    link = PrimaryLink(instruments)
    instruments.link = link
    limiter = SharedFailureLimiter(settings.auth_failure_burst, settings.auth_failure_refill)
    limiter.link = link
    app = create_app(settings, opener=worker_appliance(settings, link, args.link, args.index),
                     instruments=instruments, limiter=limiter)
    app.state.replay_guard = SharedReplayGuard(link)
    configure_logging(secrets=secrets_of(settings))
    config = uvicorn.Config(app, access_log=False, log_config=None, log_level="warning", lifespan="on",
                            **server_options(settings), timeout_graceful_shutdown=args.graceful)
    server = uvicorn.Server(config)

    def primary_gone() -> None:
        if not server.should_exit:
            log.error("the primary process went away; worker %d stops", args.index)
            os.kill(os.getpid(), signal.SIGTERM)

    link.on_lost = primary_gone
    freeze_startup_objects()
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

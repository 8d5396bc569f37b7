"""The primary process's end of the links: it owns the writer, the checkpointer, the outbox, the
failed-authentication limiter and the Slack replay memory, and answers the HTTP workers for them.
"""

import asyncio
import logging
import sqlite3
import time
from typing import Any

from appliance.service import Appliance
from appliance.slack.replay import ReplayGuard
from appliance.slack.signing import SlackSignatureError
from appliance.store.errors import StoreUnavailable
from appliance.web.instruments import COMMIT_BUCKETS, LATENCY_BUCKETS, Histogram
from appliance.web.rate_limit import FailureLimiter
from appliance.workers import wire
from appliance.workers.link import Later, Peer
from appliance.workers.remote import STATUS_INTERVAL

log = logging.getLogger("runlog.primary")


class PrimaryService:
    """Serves every worker's link; `broadcast_status` runs until cancelled."""

    def __init__(self, appliance: Appliance, limiter: FailureLimiter) -> None:
        self.appliance, self.limiter = appliance, limiter
        self.replay = ReplayGuard()
        self.commit_sizes = Histogram(COMMIT_BUCKETS)
        appliance.writer.on_commit = self.commit_sizes.observe
        self.peers: set[Peer] = set()
        self.workers_connected = 0  # hellos received: start-up waits for one per worker

    def peer(self) -> Peer:
        peer = Peer({"append": self._append, "cut": self._cut, "auth_failed": self._auth_failed,
                     "replay": self._replay, "metrics": self._metrics, "hello": self._hello,
                     "status": lambda _body: self.status()},
                    on_lost=self.peers.discard)
        peer.same_user_only = True
        self.peers.add(peer)
        return peer

    # -- handlers ----------------------------------------------------------------------------

    def _append(self, body: bytes) -> Later:
        return Later(self.appliance.writer.enqueue(wire.request_from(body)), wire.result_body)

    async def _cut(self, body: Any) -> list[Any]:
        checkpointer = self.appliance.checkpointer
        if checkpointer is None:
            raise StoreUnavailable("the checkpointer is not running")
        try:
            checkpoint, signed = await asyncio.to_thread(checkpointer.cut_now)
        except sqlite3.Error as error:  # disk full, read-only: a 503 to retry, as in one process
            raise StoreUnavailable(f"the store cannot be written right now: {error}; retry later") from error
        return [checkpoint.size, signed]

    def _auth_failed(self, key: str) -> int | None:
        self.limiter.failed(key)
        wait = self.limiter.retry_after(key)
        if wait is not None:
            for peer in list(self.peers):
                peer.notify("blocked", [key, wait])
        return wait

    def _replay(self, body: list[Any]) -> bool:
        signature, now = body
        try:
            self.replay.check(signature, now=now)
        except SlackSignatureError:
            return False
        return True

    async def _metrics(self, body: Any) -> list[Any]:
        """Every worker's request histograms, summed by (route, method, status)."""
        answers = await asyncio.gather(*(peer.call("requests", None) for peer in list(self.peers) if peer.connected),
                                       return_exceptions=True)
        merged: dict[tuple[str, str, str], list[Any]] = {}
        for answer in answers:
            if isinstance(answer, BaseException):
                continue  # a worker that just went away: its requests leave the sums
            for route, method, status, counts, total in answer:
                seen = merged.setdefault((route, method, status), [[0] * (len(LATENCY_BUCKETS) + 1), 0.0])
                seen[0] = [a + b for a, b in zip(seen[0], counts)]
                seen[1] += total
        return [[*key, counts, total] for key, (counts, total) in sorted(merged.items())]

    def _hello(self, index: int) -> None:
        self.workers_connected += 1

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        writer, outbox = self.appliance.writer, self.appliance.outbox
        return {"running": writer.running, "queue_depth": writer.queue_depth, "commits": writer.commits,
                "last_failure": list(writer.last_failure) if writer.last_failure is not None else None,
                "last_group_events": writer.last_group_events, "size": writer.size,
                "outbox_running": outbox.running if outbox is not None else True,
                "commit_counts": self.commit_sizes.counts, "commit_sum": self.commit_sizes.sum,
                "at": time.monotonic()}

    async def broadcast_status(self) -> None:
        while True:
            status = self.status()
            for peer in list(self.peers):
                peer.notify("status", status)
            await asyncio.sleep(STATUS_INTERVAL)

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
        # Request histograms as each worker last reported them, and the sum of those of workers
        # that have gone: a dead worker's counts stay in /metrics, so no counter ever goes down.
        self._last_requests: dict[Peer, list[Any]] = {}
        self._retired: dict[tuple[str, str, str], list[Any]] = {}

    def peer(self) -> Peer:
        peer = Peer({"append": self._append, "cut": self._cut, "auth_failed": self._auth_failed,
                     "replay": self._replay, "metrics": self._metrics, "hello": self._hello,
                     "status": lambda _body: self.status()},
                    on_lost=self._lost)
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

    def _lost(self, peer: Peer) -> None:
        self.peers.discard(peer)
        _add_series(self._retired, self._last_requests.pop(peer, []))

    async def _metrics(self, body: Any) -> list[Any]:
        """Every worker's request histograms, summed by (route, method, status), plus those of
        workers that have gone as they last reported them (requests since then are not counted)."""
        peers = [peer for peer in list(self.peers) if peer.connected]
        answers = await asyncio.gather(*(peer.call("requests", None) for peer in peers), return_exceptions=True)
        for peer, answer in zip(peers, answers):
            if peer in self.peers and not isinstance(answer, BaseException) \
                    and _counted(answer) >= _counted(self._last_requests.get(peer, [])):  # not an older answer
                self._last_requests[peer] = answer
        merged = {key: [list(counts), total] for key, (counts, total) in self._retired.items()}
        for answer in self._last_requests.values():  # a worker that failed to answer: its last report
            _add_series(merged, answer)
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


def _add_series(sums: dict[tuple[str, str, str], list[Any]], series: list[Any]) -> None:
    for route, method, status, counts, total in series:
        seen = sums.setdefault((route, method, status), [[0] * (len(LATENCY_BUCKETS) + 1), 0.0])
        seen[0] = [a + b for a, b in zip(seen[0], counts)]
        seen[1] += total


def _counted(series: list[Any]) -> int:
    return sum(sum(counts) for *_, counts, _ in series)

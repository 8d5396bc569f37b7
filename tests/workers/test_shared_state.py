"""What the HTTP workers share through the primary, tested with two workers' links to one primary
over real Unix sockets and a real appliance: appends, the failed-authentication limiter, Slack's
replay memory, request metrics summed over workers, and the status mirror that /healthz reads;
on both event loops RUNLOG_LOOP offers, over an abstract address as `runlog serve` uses."""

import asyncio
import os
import threading
from dataclasses import replace

import pytest

from appliance import loops
from appliance.core.sequencer import Event, RunClosedError
from appliance.service import init_appliance, open_appliance
from appliance.settings import Settings
from appliance.slack.signing import SlackSignatureError
from appliance.store.writer import AppendRequest
from appliance.web.rate_limit import FailureLimiter
from appliance.workers.link import LinkLost, abstract_address
from appliance.workers.primary import PrimaryService
from appliance.workers.remote import (PrimaryLink, RemoteCheckpointer, RemoteWriter, SharedFailureLimiter,
                                      SharedInstruments, SharedReplayGuard)


class Cluster:
    """A primary service and two worker links, on an event loop in a thread of its own."""

    def __init__(self, tmp_path, burst: int = 3, loop: str = "asyncio") -> None:
        self.settings = replace(Settings(), data_dir=tmp_path / "data", keys_dir=tmp_path / "data" / "keys")
        init_appliance(self.settings)
        self.appliance = open_appliance(self.settings)
        self.loop = loops.loop_factory(loop)()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = PrimaryService(self.appliance, FailureLimiter(burst, 3600.0))
        self.path = abstract_address(f"runlog-test-{os.getpid()}-{id(self)}")
        self.server = self.run(self.loop.create_unix_server(self.service.peer, self.path))
        self.status_task = self.loop.call_soon_threadsafe(lambda: setattr(
            self, "_broadcast", self.loop.create_task(self.service.broadcast_status())))
        self.workers = [self._worker(index, burst) for index in range(2)]

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    def _worker(self, index: int, burst: int):
        instruments = SharedInstruments()
        link = PrimaryLink(instruments)
        instruments.link = link
        self.run(link.connect(self.path, index))
        limiter = SharedFailureLimiter(burst, 3600.0)
        limiter.link = link
        return link, limiter, instruments

    def wait(self, condition, seconds: float = 5.0) -> None:
        for _ in range(int(seconds / 0.01)):
            if condition():
                return
            threading.Event().wait(0.01)
        raise AssertionError("condition not met in time")

    def close(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.appliance.close()

    async def _stop(self):
        self._broadcast.cancel()
        self.server.close()
        for peer in list(self.service.peers):
            peer.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def cluster(tmp_path, request):
    cluster = Cluster(tmp_path, loop=request.param)
    yield cluster
    cluster.close()


def _event(trace: int, final: bool = False) -> Event:
    return Event(trace_id=f"{trace:032x}", step="s", status="succeeded" if final else "info",
                 ts="2026-11-28T10:00:00Z", source="admin", final=final).prepared()


def test_both_workers_append_to_one_chain_and_errors_come_back_typed(cluster):
    writers = [RemoteWriter(link) for link, _, _ in cluster.workers]
    results = [cluster.run(writers[n % 2].append(AppendRequest([_event(7, final=n == 3)], "admin"))) for n in range(4)]
    assert [r.first_seq for r in results] == [0, 1, 2, 3]
    with pytest.raises(RunClosedError, match="was closed by its final entry at seq 3"):
        cluster.run(writers[1].append(AppendRequest([_event(7)], "admin")))
    cluster.wait(lambda: all(w.running and w.commits >= 1 and w.size == 4 for w in writers))
    checkpoint, signed = RemoteCheckpointer(cluster.workers[0][0], cluster.appliance.reader).cut_now()
    assert (checkpoint.size, signed) == (4, True)
    assert RemoteCheckpointer(cluster.workers[1][0], cluster.appliance.reader).cut_now()[1] is False


def test_failed_logins_on_different_workers_add_up_and_block_the_address_everywhere(cluster):
    (_, a, _), (_, b, _) = cluster.workers
    a.failed("203.0.113.9")
    b.failed("203.0.113.9")
    assert a.retry_after("203.0.113.9") is None and b.retry_after("203.0.113.9") is None  # 2 of 3 each side
    cluster.loop.call_soon_threadsafe(a.failed, "203.0.113.9")  # the third, on worker a: blocked on b too
    cluster.wait(lambda: b.retry_after("203.0.113.9") is not None)
    assert a.retry_after("203.0.113.9") is not None
    assert a.retry_after("198.51.100.1") is None and b.retry_after("198.51.100.1") is None


def test_a_slack_signature_seen_by_one_worker_is_a_replay_on_the_other(cluster):
    guards = [SharedReplayGuard(link) for link, _, _ in cluster.workers]
    guards[0].check("v0=aa", now=1000.0)
    with pytest.raises(SlackSignatureError, match="replay"):
        guards[1].check("v0=aa", now=1001.0)
    guards[1].check("v0=bb", now=1001.0)


def test_metrics_sum_every_workers_requests(cluster):
    (_, _, first), (_, _, second) = cluster.workers
    for seconds in (0.002, 0.02):
        first.observe_request("/v1/events", "POST", 201, seconds)
    second.observe_request("/v1/events", "POST", 201, 0.2)
    second.observe_request("/healthz", "GET", 200, 0.001)
    series = dict(first.request_series())
    assert series[("/v1/events", "POST", "201")].cumulative()[-1] == ("+Inf", 3)
    assert round(series[("/v1/events", "POST", "201")].sum, 3) == 0.222
    assert series[("/healthz", "GET", "200")].cumulative()[-1] == ("+Inf", 1)
    assert dict(first.local_series())[("/v1/events", "POST", "201")].cumulative()[-1] == ("+Inf", 2)


def test_a_worker_whose_primary_went_away_reports_the_writer_down_and_refuses_appends(cluster):
    link = cluster.workers[0][0]
    writer = RemoteWriter(link)
    cluster.wait(lambda: writer.running)
    cluster.run(cluster._stop())
    cluster.wait(lambda: not writer.running)
    with pytest.raises(LinkLost):
        cluster.run(writer.append(AppendRequest([_event(9)], "admin")))


def test_a_worker_that_goes_away_leaves_its_counted_requests_in_the_sums(cluster):
    (first_link, _, first), (_, _, second) = cluster.workers

    def served() -> int:
        return dict(second.request_series())[("/v1/events", "POST", "201")].cumulative()[-1][1]

    first.observe_request("/v1/events", "POST", 201, 0.002)
    second.observe_request("/v1/events", "POST", 201, 0.002)
    assert served() == 2  # a scrape: the primary now holds both workers' reports
    cluster.loop.call_soon_threadsafe(first_link.peer.close)
    cluster.wait(lambda: len(cluster.service.peers) == 1)
    assert served() == 2  # no counter reset when a worker dies
    second.observe_request("/v1/events", "POST", 201, 0.002)
    assert served() == 3

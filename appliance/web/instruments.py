"""The in-process measurements `GET /metrics` shows: request latency by route, method and status,
and the writer's commit sizes, as Prometheus-style cumulative histograms.

Each histogram is written by one thread only (requests by the event loop, commits by the writer
thread); /metrics reads them from another, which may see one observation half-recorded (a
count without its sum). Prometheus tolerates that; no lock sits on the ingest path.
"""

from bisect import bisect_left
from collections.abc import Sequence

# Seconds: from a cached read (~1 ms) to a slow export; ingest under load sits in 2.5-50 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Entries per group commit: one lone event up to the writer's bound (MAX_GROUP_EVENTS).
COMMIT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000)


class Histogram:
    """Counts of observations per bucket (`le` upper bounds, then +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations at most le) for every bucket, ending with ("+Inf", count)."""
        running, out = 0, []
        for bound, count in zip([*map(_number, self.bounds), "+Inf"], list(self.counts)):
            running += count
            out.append((bound, running))
        return out


def _number(value: float) -> str:
    return repr(float(value))


class Instruments:
    """What the app measures while it runs; one per app (`app.state.instruments`)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], Histogram] = {}
        self.commit_sizes = Histogram(COMMIT_BUCKETS)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        histogram = self.requests.get(key)
        if histogram is None:
            histogram = self.requests[key] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def request_series(self) -> list[tuple[tuple[str, str, str], Histogram]]:
        """((route, method, status), histogram) pairs, sorted; `list()` copies the dict in one call
        under the GIL, so a request adding a key meanwhile cannot break the iteration."""
        return sorted(list(self.requests.items()), key=lambda pair: pair[0])

    def observe_commit(self, entries: int) -> None:
        """The writer's `on_commit`: a group commit added `entries` entries to the log."""
        self.commit_sizes.observe(entries)

    @property
    def events_ingested(self) -> int:
        """Entries the writer committed since this app started."""
        return round(self.commit_sizes.sum)

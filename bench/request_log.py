"""Cost per request of the request log (appliance.web.request_log): timing, the latency histogram
and one JSON line, measured in-process around a trivial ASGI app that answers like an ingest call.

Run: .venv/bin/python bench/request_log.py [--requests 50000] [--rounds 5]

Cases, each the best of `--rounds` rounds of `--requests` requests on one event loop:
- bare: the trivial app alone (the baseline subtracted from the others);
- histogram only: wrapped, with the runlog.request logger above INFO (no line);
- JSON line to a file: wrapped, `configure_logging` writing to a file (what `docker logs` reads
  through a pipe costs about the same: one write per line);
- the same line through `logging` (a LogRecord and the JSON formatter), the path `log_request`
  bypasses, for comparison;
Figures are microseconds per request; the overhead is the case minus bare.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance import logs  # noqa: E402
from appliance.web.instruments import Instruments  # noqa: E402
from appliance.web.request_log import RequestLog  # noqa: E402

SCOPE = {
    "type": "http", "method": "POST", "path": "/v1/events", "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"content-type", b"application/json"),
                (b"authorization", b"Bearer rl_0123456789abcdef0123456789abcdef"), (b"content-length", b"120"),
                (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
}
START = {"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]}
BODY = {"type": "http.response.body", "body": b'{"first_seq":1}', "more_body": False}


async def ingest_like(scope, receive, send) -> None:
    scope["path_template"] = "/v1/events"  # what Litestar's router sets
    await send(START)
    await send(BODY)


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message) -> None:
    return None


async def _round(app, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(SCOPE), _receive, _send)
    return (time.perf_counter() - started) / requests * 1e6


def best(app, requests: int, rounds: int) -> float:
    return min(asyncio.run(_round(app, requests)) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    wrapped = RequestLog(ingest_like, Instruments())
    with tempfile.TemporaryDirectory() as folder, open(os.path.join(folder, "log"), "w") as sink:
        logs.configure_logging(stream=sink)
        bare = best(ingest_like, args.requests, args.rounds)
        logging.getLogger("runlog.request").setLevel(logging.WARNING)
        histogram = best(wrapped, args.requests, args.rounds)
        logging.getLogger("runlog.request").setLevel(logging.NOTSET)
        logged = best(wrapped, args.requests, args.rounds)
        direct, logs._request_handler = logs._request_handler, None
        via_logging = best(wrapped, args.requests, args.rounds)
        logs._request_handler = direct
        sink.flush()
        line = Path(folder, "log").read_text().splitlines()[-1]
    print(f"request log cost, {args.requests:,} requests x best of {args.rounds} rounds; "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    print(f"  bare trivial ASGI app:      {bare:6.2f} us/request")
    print(f"  + histogram only:           {histogram:6.2f} us/request (+{histogram - bare:.2f})")
    print(f"  + histogram and JSON line:  {logged:6.2f} us/request (+{logged - bare:.2f})")
    print(f"  + line through logging:     {via_logging:6.2f} us/request (+{via_logging - bare:.2f})")
    print(f"  a line: {line}")


if __name__ == "__main__":
    main()

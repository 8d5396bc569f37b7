"""What the worker-to-primary link costs per append (RUNLOG_WORKERS > 1), in CPU on each side.

    python bench/link.py [--calls 20000] [--in-flight 32] [--events 1] [--loop auto|asyncio|uvloop]

A real link over a Unix socket between two processes: this one (the worker's side) sends
`--calls` append requests of `--events` prepared events each (bench/ingest.py's event shape),
`--in-flight` at a time; the other (the primary's side) decodes each into `WireEvent`s and answers
with a result of the same size a writer's would have, without a writer. Prints CPU per call on
each side and calls per second. The difference to one process is this cost plus the operating
system's wake-ups; what the writer itself costs is measured by bench/writer.py. Both sides run on
the event loop `--loop` names (RUNLOG_LOOP's choices; default auto: uvloop when installed).
"""

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest import make_events  # noqa: E402

from appliance.core.sequencer import Event  # noqa: E402
from appliance.store.writer import AppendRequest, AppendResult  # noqa: E402
from appliance.workers import wire  # noqa: E402
from appliance.loops import LOOPS, resolved  # noqa: E402
from appliance.loops import run as run_on  # noqa: E402
from appliance.workers.link import Peer, abstract_address, connect  # noqa: E402


def _primary(name: str, ready: int, loop: str) -> None:
    async def main() -> None:
        def append(body: bytes) -> list:
            request = wire.request_from(body)
            count = len(request.events)
            result = AppendResult(0, tuple(b"\x11" * 32 for _ in range(count)), "2026-11-28T10:00:00.000000Z",
                                  "runlog-receipt/v1\n" + "x" * 200)
            return wire.result_body(result)

        await asyncio.get_running_loop().create_unix_server(lambda: Peer({"append": append}), abstract_address(name))
        os.write(ready, b"1")
        await asyncio.Event().wait()

    run_on(main(), loop)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--events", type=int, default=1, help="events per append (1,000 for a batch)")
    parser.add_argument("--loop", choices=LOOPS, default="auto")
    args = parser.parse_args(argv)
    name = f"runlog-bench-link-{os.getpid()}"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        _primary(name, write_end, args.loop)
        os._exit(0)
    os.read(read_end, 1)
    events = [Event(trace_id=e["trace_id"], step=e["step"], status=e["status"], ts="2026-11-28T10:00:00Z", source="bench",
                    attrs=e["attrs"]).prepared() for e in make_events(max(1, args.events), 1, seed=3)]
    request = AppendRequest(events[: args.events], "bench")

    async def client() -> tuple[float, float]:
        _, peer = await connect(lambda: Peer({}), abstract_address(name))
        gate = asyncio.Semaphore(args.in_flight)

        async def one() -> None:
            async with gate:
                wire.result_from(await peer.call("append", wire.request_body(request)))

        started_cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one() for _ in range(args.calls)))
        return time.process_time() - started_cpu, time.perf_counter() - started

    try:
        primary_before = _cpu_seconds(pid)
        worker_cpu, wall = run_on(client(), args.loop)
        primary_cpu = _cpu_seconds(pid) - primary_before
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    print(f"link, {args.calls:,} appends of {args.events} event(s), {args.in_flight} in flight, "
          f"{resolved(args.loop)} loop; load "
          + "/".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"  worker side  {worker_cpu * 1e6 / args.calls:8.1f} us CPU per append (includes this bench's own "
          f"asyncio gather/semaphore, ~5 us)")
    print(f"  primary side {primary_cpu * 1e6 / args.calls:8.1f} us CPU per append")
    print(f"  {args.calls / wall:,.0f} appends/s, {args.calls * args.events / wall:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

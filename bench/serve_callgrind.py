"""Instructions per request of `runlog serve` over real HTTP, per process and thread (callgrind).

    python bench/serve_callgrind.py [--workers 2] [--clients 32] [--seconds 20] [--batch]

`runlog serve` runs under `valgrind --tool=callgrind --trace-children=yes --instr-atstart=no`
(so its HTTP worker processes do too), counting only while `wrk` sends bench/ingest.py's
single-event bodies (or, with `--batch`, its 1,000-event bodies, 4 clients); then prints each
process's and thread's instructions divided by the requests answered. Instruction counts do not
move with other load on the machine, so this is the figure for small before/after deltas
(run it on each tree: PYTHONPATH=TREE). Under valgrind everything runs ~50x slower and one
thread at a time, so group commits are smaller than in a real run: the writer's figure is an
upper bound, and when the disk sets the pace (synchronous=FULL) fewer requests share the workers'
fixed costs (status pushes, timers): so each process's instructions while idle (`--idle` seconds
first) are taken off at the same rate, and before/after are best compared with `--synchronous
NORMAL`; still, more requests per event-loop turn cost less each, so compare runs that answered
similar numbers of requests.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from ingest import ADMIN_TOKEN, BATCH, make_events, runlog_server, write_bodies, wrk_load  # noqa: E402


def _tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            pending += [int(c) for c in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
        except OSError:
            pass
    return found


def _totals(path: Path) -> int:
    found = re.findall(r"^totals: (\d+)", path.read_text(errors="replace"), re.M)
    return int(found[-1]) if found else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", action="store_true", help="1,000 events per request (4 clients)")
    parser.add_argument("--out", type=Path, help="keep the callgrind files in this directory")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of an idle server measured first")
    parser.add_argument("--synchronous", default="FULL",
                        help="RUNLOG_SYNCHRONOUS (NORMAL: no fsync, so the disk does not set the pace)")
    args = parser.parse_args(argv)
    clients = 4 if args.batch else args.clients
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        out = args.out or work / "callgrind"
        out.mkdir(parents=True, exist_ok=True)
        if args.batch:
            events = make_events(runs=2000, steps=10, seed=2)
            bodies = [events[i:i + BATCH] for i in range(0, len(events), BATCH)]
        else:
            bodies = make_events(runs=1000, steps=10, seed=1)
        body_file = write_bodies(work / "bodies.txt", bodies)
        server = runlog_server(work / "data", work / "server.log", workers=args.workers)
        server.env["RUNLOG_SYNCHRONOUS"] = args.synchronous
        server.argv = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--instr-atstart=no",
                       "--separate-threads=yes", f"--callgrind-out-file={out}/cg.%p"] + server.argv
        server.start(timeout=600)
        try:
            time.sleep(2)
            pids = _tree(server.process.pid)  # valgrind replaces itself with python: same pids
            for pid in pids:
                subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True)
            started = time.monotonic()
            time.sleep(args.idle)  # no requests: the status pushes, timers and polls of an idle server
            for pid in pids:
                subprocess.run(["callgrind_control", "--dump=idle", str(pid)], capture_output=True)
            idle_seconds = time.monotonic() - started
            load = wrk_load(server.url, "/v1/events", ADMIN_TOKEN, body_file, clients, args.seconds)
            for pid in pids:
                subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
        finally:
            server.stop(timeout=300)
        requests = max(load.ok, 1)
        print(f"runlog serve, {args.workers} workers, {clients} clients, {args.seconds:.0f} s under callgrind: "
              f"{load.ok} requests answered ({load.errors} errors), synchronous={args.synchronous}; "
              f"instructions per request, less the same process's idle rate ({idle_seconds:.0f} s measured)")
        primary = server.process.pid
        parts: dict[tuple[str, int], list[int]] = {}
        for path in sorted(out.glob("cg.*")):
            text = path.read_text(errors="replace")
            header = dict(re.findall(r"^(pid|thread|part): (\d+)$", text, re.M))
            if not header or int(header["pid"]) not in pids:
                continue
            pid = int(header["pid"])
            role = "primary" if pid == primary else f"worker {pids.index(pid)}"
            parts.setdefault((role, int(header.get("thread", 1))), []).append((int(header.get("part", 1)), _totals(path)))
        rows: dict[str, float] = {}
        for (role, thread), counts in sorted(parts.items()):
            counts.sort()
            idle, loaded = (counts[0][1], counts[-1][1]) if len(counts) > 1 else (0, counts[0][1])
            rows[f"{role} thread {thread}"] = loaded - idle * args.seconds / idle_seconds
        for name, count in rows.items():
            if count > 0.0005 * requests * 1000:
                print(f"  {name:22} {count / requests / 1000:10.1f}k")
        workers = sum(count for name, count in rows.items() if name.startswith("worker"))
        print(f"  {'workers together':22} {workers / requests / 1000:10.1f}k")
        print(f"  {'whole tree':22} {sum(rows.values()) / requests / 1000:10.1f}k")
    return 0


if __name__ == "__main__":
    sys.exit(main())

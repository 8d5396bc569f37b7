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
fixed costs (status pushes, timers): compare before/after with `--synchronous NORMAL`.
"""

import argparse
import os
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
            load = wrk_load(server.url, "/v1/events", ADMIN_TOKEN, body_file, clients, args.seconds)
            for pid in pids:
                subprocess.run(["callgrind_control", "-i", "off", str(pid)], capture_output=True)
        finally:
            server.stop(timeout=300)
        requests = load.ok
        print(f"runlog serve, {args.workers} workers, {clients} clients, {args.seconds:.0f} s under callgrind: "
              f"{requests} requests answered ({load.errors} errors), synchronous={args.synchronous}")
        primary = server.process.pid
        rows: dict[str, int] = {}
        for path in sorted(out.glob("cg.*")):
            match = re.fullmatch(r"cg\.(\d+)(?:-(\d+))?", path.name)
            if match is None:
                continue
            pid, thread = int(match[1]), int(match[2] or 1)
            if pid not in pids:
                continue
            role = "primary" if pid == primary else f"worker {pids.index(pid)}"
            rows[f"{role} thread {thread}"] = _totals(path)
        total = sum(rows.values())
        for name, count in rows.items():
            if count:
                print(f"  {name:22} {count / max(requests, 1) / 1000:10.1f}k instructions per request")
        workers = sum(count for name, count in rows.items() if name.startswith("worker"))
        print(f"  {'workers together':22} {workers / max(requests, 1) / 1000:10.1f}k")
        print(f"  {'whole tree':22} {total / max(requests, 1) / 1000:10.1f}k")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fuzz: the fuzz suites with many more examples than CI gives them, one summary line each.

    python -m reliability.fuzz                      # 1,000 examples per property, every suite
    python -m reliability.fuzz --examples 5000 --suite openapi

Suites (each a pytest module; CI runs the same code with a few dozen examples):
- openapi: schemathesis against a real `runlog serve`, every operation of /schema, valid and
  invalid requests (tests/fuzz/test_openapi.py);
- edge: Authorization headers, download links, Slack signatures, forms, payloads, commands
  (tests/fuzz/test_edge_parsers.py);
- evidence: whole evidence files through the offline verifier (tests/fuzz/test_evidence_files.py);
- core: every parser and verifier of appliance.core (tests/core/test_garbage.py).
The example count reaches the tests through RUNLOG_FUZZ_EXAMPLES (tests.fuzz.examples).
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "openapi": "tests/fuzz/test_openapi.py",
    "edge": "tests/fuzz/test_edge_parsers.py",
    "evidence": "tests/fuzz/test_evidence_files.py",
    "core": "tests/core/test_garbage.py",
}


def run_suite(name: str, examples: int, seed: str | None) -> tuple[bool, str]:
    """Run one suite in its own pytest process; (passed, its summary line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITES[name]]
    if seed is not None:
        command.append(f"--hypothesis-seed={seed}")
    env = {**os.environ, "RUNLOG_FUZZ_EXAMPLES": str(examples)}
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, encoding="utf-8", errors="replace")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else done.stderr.strip()[-300:]
    if done.returncode != 0:
        print(done.stdout[-20_000:], file=sys.stderr)
    return done.returncode == 0, f"{name:9} {examples:>6} examples/property  {time.monotonic() - started:7.1f} s  {summary}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="hypothesis examples per property (default 1000)")
    parser.add_argument("--suite", choices=sorted(SUITES), action="append", help="run only this suite (repeatable)")
    parser.add_argument("--seed", help="hypothesis seed, to repeat a run")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    ok = True
    for name in args.suite or list(SUITES):
        passed, line = run_suite(name, args.examples, args.seed)
        print(line, flush=True)
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

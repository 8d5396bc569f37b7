"""Auth timing: does how close a guessed token is to a real one show in how long the answer takes?

    python -m reliability.auth_timing                  # in-process and over HTTP
    python -m reliability.auth_timing --samples 20000 --http-requests 4000

The appliance hashes the presented token (SHA-256) and compares the digest with every stored
token's digest by `hmac.compare_digest`, without stopping at a match, so neither a shared prefix
with a real token nor the position of the first wrong character should change the time. This
measures it, interleaving the kinds of guess at random so that drift in the machine's load hits
them alike, and prints each kind's median and spread:
- in process: `TokenAuthenticator.authenticate` over a real SQLite token table;
- over HTTP: `GET /v1/runs` against a real `runlog serve` (the failed-auth limiter opened wide).
A signal would be a gap between "one character off" and "nothing in common" larger than the spread
of either. These are figures, not a test: docs/RELIABILITY.md records a run.
"""

import argparse
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

import httpx

from appliance.store.db import connect, migrate
from appliance.store.tokens import TokenAuthenticator, create_token

NOW = "2026-11-28T00:00:00Z"


def _guesses(real: str) -> dict[str, str]:
    """Kinds of wrong token, each as long as the real one unless said otherwise."""
    flip = {c: ("A" if c != "A" else "B") for c in string.printable}
    return {
        "valid": real,
        "last char wrong": real[:-1] + flip[real[-1]],
        "first char after rl_ wrong": real[:3] + flip[real[3]] + real[4:],
        "nothing in common": "rl_" + "".join(random.choice(string.ascii_letters) for _ in range(len(real) - 3)),
        "shorter (20 chars)": real[:20],
    }


def _summary(samples: dict[str, list[float]], unit: float, label: str) -> None:
    print(f"{'kind of token':28} {'median':>10} {'p10':>10} {'p90':>10}  ({label}, n={len(next(iter(samples.values())))})")
    for kind, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"{kind:28} {statistics.median(values) * unit:10.2f} {deciles[0] * unit:10.2f} {deciles[-1] * unit:10.2f}")


def _interleaved(kinds: list[str], rounds: int) -> list[str]:
    order = kinds * rounds
    random.shuffle(order)
    return order


def in_process(samples: int, tokens: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "runlog.sqlite"
        conn = connect(db)
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        secrets = [create_token(conn, f"t{n}", ["read"], now=NOW)[0] for n in range(tokens)]
        conn.execute("COMMIT")
        authenticator = TokenAuthenticator(lambda: connect(db))
        guesses = _guesses(secrets[tokens // 2])
        times: dict[str, list[float]] = {kind: [] for kind in guesses}
        for kind in _interleaved(list(guesses), samples):
            token = guesses[kind]
            started = time.perf_counter_ns()
            authenticator.authenticate(token)
            times[kind].append(time.perf_counter_ns() - started)
        authenticator.close()
    print(f"\nTokenAuthenticator.authenticate, {tokens} active tokens (wrong tokens also reread the table "
          "at most every 50 ms: the p90 column)")
    _summary(times, 1e-3, "microseconds")


def over_http(requests: int) -> None:
    from tests.e2e.server import ADMIN_TOKEN, Server

    with tempfile.TemporaryDirectory() as directory:
        server = Server(Path(directory) / "data", RUNLOG_AUTH_FAILURE_BURST="100000").start()
        try:
            guesses = _guesses(ADMIN_TOKEN)
            times: dict[str, list[float]] = {kind: [] for kind in guesses}
            with httpx.Client(base_url=server.url, timeout=10) as http:
                for kind in _interleaved(list(guesses), requests):
                    headers = {"Authorization": f"Bearer {guesses[kind]}"}
                    started = time.perf_counter_ns()
                    http.get("/v1/runs", params={"limit": 1}, headers=headers)
                    times[kind].append(time.perf_counter_ns() - started)
        finally:
            server.kill()
    print("\nGET /v1/runs over HTTP (keep-alive, one client)")
    _summary(times, 1e-6, "milliseconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.auth_timing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000, help="in-process calls per kind of token")
    parser.add_argument("--tokens", type=int, default=50, help="active tokens in the table")
    parser.add_argument("--http-requests", type=int, default=2_000, help="HTTP requests per kind of token (0: skip)")
    args = parser.parse_args(argv)
    in_process(args.samples, args.tokens)
    if args.http_requests:
        over_http(args.http_requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Failed-authentication limiter: each client address may present only so many bad tokens.

A token is 256 random bits, so guessing one is hopeless; the limiter is there so that a guesser
costs the appliance little and shows up clearly (429s), and so that a leaked-token scanner
cannot sweep lists of candidates at full speed. Each address holds a bucket of `burst` failures
that refills by one every `refill_seconds`; while it is empty, every request from that address
to a guarded route gets 429 with `Retry-After`, even one with a valid token (otherwise a
guesser would learn of a hit by it not being refused). Requests without credentials and tokens
lacking a scope (403) cost nothing: only unknown, revoked or malformed tokens do.

What "address" means: the peer address of the connection, `scope["client"]`. IPv6 addresses
count per /64, because one host usually owns a whole /64. Behind a reverse proxy every request
comes from the proxy, so one guesser would lock out everyone: list the proxy in
RUNLOG_TRUSTED_PROXIES and the server (uvicorn's proxy-headers support) replaces the peer
with the right-most address in `X-Forwarded-For` that is not a trusted proxy. Never list an
address that clients can reach directly: anything it sends in that header would be believed.

Memory is bounded: at most `max_clients` buckets; past that, the addresses that failed least
recently are forgotten first.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.core.errors import InvalidInput

DEFAULT_BURST = 20
DEFAULT_REFILL_SECONDS = 3.0
DEFAULT_MAX_CLIENTS = 10_000


def client_key(scope: Mapping[str, Any]) -> str:
    """The limiter's key for a request: its peer address, IPv6 narrowed to its /64."""
    client = scope.get("client")
    host = client[0] if client else None
    if not isinstance(host, str) or not host:
        return "unknown"
    return _host_key(host)


@functools.lru_cache(maxsize=4096)  # parsing an address costs ~8 us, and this runs on every request
def _host_key(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket path or a test client's name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped or address) if isinstance(address, ipaddress.IPv6Address) else str(address)


@dataclass
class _Bucket:
    debt: float  # failures not yet forgiven
    at: float  # when `debt` was last brought up to date


@dataclass
class FailureLimiter:
    """Counts failed authentications per client key. Thread-safe; every call is O(1)."""

    burst: int = DEFAULT_BURST
    refill_seconds: float = DEFAULT_REFILL_SECONDS
    max_clients: int = DEFAULT_MAX_CLIENTS
    clock: Callable[[], float] = time.monotonic
    _buckets: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise InvalidInput("burst: must be a whole number of at least 1", field="burst")
        if not isinstance(self.refill_seconds, (int, float)) or not 0 < self.refill_seconds <= 86_400:
            raise InvalidInput("refill_seconds: must be more than 0 and at most a day", field="refill_seconds")
        if isinstance(self.max_clients, bool) or not isinstance(self.max_clients, int) or self.max_clients < 1:
            raise InvalidInput("max_clients: must be a whole number of at least 1", field="max_clients")

    def _settled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.debt = max(0.0, bucket.debt - (now - bucket.at) / self.refill_seconds)
            bucket.at = now
        return bucket

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until `key` may try again, or None when it may try now."""
        if key not in self._buckets:  # no failure on record, the usual case: no lock (one atomic lookup)
            return None
        with self._lock:
            bucket = self._settled(key, self.clock())
            if bucket is None or bucket.debt <= self.burst - 1:
                return None
            return max(1, math.ceil((bucket.debt - (self.burst - 1)) * self.refill_seconds))

    def failed(self, key: str) -> None:
        """Record one failed authentication from `key`."""
        with self._lock:
            now = self.clock()
            bucket = self._settled(key, now)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(0.0, now)
                if len(self._buckets) > self.max_clients:
                    self._buckets.popitem(last=False)
            bucket.debt = min(bucket.debt + 1, self.burst + 1)  # a bounded wait, however long the attack
            self._buckets.move_to_end(key)

    def tracked(self) -> int:
        """How many client keys hold a bucket (for metrics and tests)."""
        with self._lock:
            return len(self._buckets)

"""Refusing a signed Slack request seen before, while its timestamp is still inside the window.

The signature window stops a request captured more than five minutes ago; this stops one replayed
within those five minutes. Slack never sends the same slash command or interaction twice (each
carries its own `trigger_id` and `response_url`), so a second copy of a signature is a replay.
Only signatures that verified are remembered, so nobody without the secret can fill the memory;
it is bounded anyway, oldest forgotten first. With several HTTP worker processes, the primary
holds the one memory and the workers ask it (appliance.workers.remote.SharedReplayGuard).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from appliance.slack.signing import WINDOW_SECONDS, SlackSignatureError

DEFAULT_CAPACITY = 100_000


class ReplayGuard:
    """Remembers each verified signature for the signing window; thread-safe."""

    def __init__(self, *, window: float = 2 * WINDOW_SECONDS, capacity: int = DEFAULT_CAPACITY) -> None:
        # Twice the window: a timestamp up to WINDOW_SECONDS in the future stays valid that much longer.
        self._window = window
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, signature: str, *, now: float) -> None:
        """Record `signature` as used at `now`; raise `SlackSignatureError` if it was used within the window."""
        with self._lock:
            while self._seen:
                oldest, seen_at = next(iter(self._seen.items()))
                if now - seen_at <= self._window and len(self._seen) < self._capacity:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                raise SlackSignatureError("replay: this signed request was already received")
            self._seen[signature] = now

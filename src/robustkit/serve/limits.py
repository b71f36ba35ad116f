"""Per-client rate limits: one token bucket per key name (or per address for failed logins)."""
from __future__ import annotations

import math
import threading
import time

from .._validation import check_number


class RateLimiter:
    """``rate`` requests per second on average, bursts of up to ``burst``; ``rate=0`` disables the limit.

    ``hit(client)`` takes one token and returns 0.0, or the seconds until a token is free (the
    Retry-After of a 429). Buckets of idle clients are forgotten so the table stays small.
    """

    def __init__(self, rate: float, burst: int | None = None, *, max_clients: int = 10_000):
        self.rate = check_number(rate, "rate", owner="RateLimiter", low=0)
        self.burst = check_number(burst if burst is not None else max(1, math.ceil(2 * self.rate)), "burst",
                                  owner="RateLimiter", low=1, integer=True)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def hit(self, client: str, rate: float | None = None, burst: int | None = None) -> float:
        """Take a token for ``client`` (``rate``/``burst``: this client's own limit, else the default)."""
        rate = self.rate if rate is None else rate
        burst = (self.burst if rate == self.rate else max(1, math.ceil(2 * rate))) if burst is None else burst
        if rate == 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / rate
            if len(self._buckets) > self.max_clients:
                self._forget(now)
        return wait

    def peek(self, client: str) -> float:
        """Seconds until ``client`` has a token, without taking one."""
        if self.rate == 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget(self, now: float) -> None:
        full = max(60.0, self.burst / max(self.rate, 1e-9))  # a bucket idle this long is full again: same as new
        self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < full}

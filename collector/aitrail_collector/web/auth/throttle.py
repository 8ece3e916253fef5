"""Bounds on sign-in work: sliding-window rate limits and a cap on concurrent
password hashes.

An argon2id verification costs 64 MiB and tens of milliseconds of a core, so an
unbounded stream of sign-in attempts exhausts the machine (the red team took the
collector from 0.9 to 3.2 GiB with 60 parallel bogus logins). ``accounts.py``
asks these, before any hash is computed, in this order:

* ``SlidingWindow`` per client address (an IPv6 address counts by its /64, which
  one client usually holds whole) and per user name: too many attempts within
  the window are refused with 429 and a Retry-After;
* ``HashSlots``: at most ``n`` verifications at a time; an attempt waits a
  short, bounded time for a slot and is then refused with 503, so attempts never
  pile up in memory or in threads.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from typing import Callable, Hashable, Optional

MAX_KEYS = 10_000  # bounds each table under a spray of addresses or made-up names


class SlidingWindow:
    """At most ``limit`` events per key within any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.limit, self.window_s, self._clock, self.max_keys = limit, window_s, clock, max_keys
        self._lock = threading.Lock()
        self._events: dict[Hashable, deque] = {}

    def hit(self, key: Hashable) -> Optional[float]:
        """Counts one event for ``key``; None if allowed, else the seconds until the
        next one would be (the event is then not counted)."""
        now = self._clock()
        with self._lock:
            recent = self._events.get(key)
            if recent is None:
                if len(self._events) >= self.max_keys:
                    self._forget_stale(now)
                if len(self._events) >= self.max_keys:
                    # Full of live keys: refuse rather than grow (fail closed).
                    return self.window_s
                recent = self._events[key] = deque()
            while recent and recent[0] <= now - self.window_s:
                recent.popleft()
            if len(recent) >= self.limit:
                return max(0.0, recent[0] + self.window_s - now)
            recent.append(now)
            return None

    def _forget_stale(self, now: float) -> None:
        for key in [k for k, d in self._events.items()
                    if not d or d[-1] <= now - self.window_s]:
            del self._events[key]


class HashSlots:
    """At most ``n`` password hashes at a time; ``acquire`` waits at most ``wait_s``."""

    def __init__(self, n: int, wait_s: float):
        self.n, self.wait_s = n, wait_s
        self._sem = threading.BoundedSemaphore(n)

    def acquire(self, wait: bool = True) -> bool:
        return self._sem.acquire(timeout=self.wait_s if wait else 0)

    def release(self) -> None:
        self._sem.release()


def address_key(host: Optional[str]) -> str:
    """What a client address is counted as: the address, or its /64 for IPv6."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))

"""Record ids: UUIDv7 (RFC 9562), time-ordered so ids sort roughly by creation."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional


def uuid7(time_ns: Optional[int] = None, *, _now: Callable[[], int] = time.time_ns,
          _urandom: Callable[[int], bytes] = os.urandom) -> str:
    """A UUIDv7 string: 48-bit Unix milliseconds (of ``time_ns``, default now), then
    74 random bits from the OS CSPRNG, with the version and variant bits set.

    The random bits come from ``os.urandom`` on purpose: record ids are the
    collector's idempotency keys, so they must be unpredictable as well as unique.
    """
    ms = (_now() if time_ns is None else time_ns) // 1_000_000
    b = bytearray(ms.to_bytes(6, "big") + _urandom(10))
    b[6] = 0x70 | (b[6] & 0x0F)  # version 7, then rand_a (12 bits)
    b[8] = 0x80 | (b[8] & 0x3F)  # variant 0b10, then rand_b (62 bits)
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

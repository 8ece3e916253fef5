"""The collector's own errors; all derive from ``aitrail.errors.AitrailError``."""

from __future__ import annotations

from aitrail.errors import AitrailError


class StoreError(AitrailError, RuntimeError):
    """The store cannot be opened or used; the message says why."""


__all__ = ["StoreError"]

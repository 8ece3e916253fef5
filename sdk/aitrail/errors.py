"""The root of aitrail's own exceptions.

Every error the project raises on purpose derives from ``AitrailError``, so a
caller can tell aitrail's refusals from bugs, and no built-in exception
(ValueError, KeyError, LookupError) is used as a signal between modules.
Subclasses that used to be ValueErrors still are, for callers that caught them.
"""

from __future__ import annotations


class AitrailError(Exception):
    """Something aitrail refuses or cannot do; the message says what and why."""


__all__ = ["AitrailError"]

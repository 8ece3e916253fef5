"""``aitrail.review``: a reviewer's decision on the model's output, with its
structured rationale and the time spent."""

from __future__ import annotations

import dataclasses
import time
from types import TracebackType
from typing import Any, Mapping, Optional, Union

from aitrail.instrument.draft import _as_text, _Draft, _last_output, _time_ns
from aitrail.instrument.setup import _emit

DECISIONS = ("approve", "reject", "modify")


@dataclasses.dataclass(frozen=True)
class Rationale:
    """Why a reviewer decided as they did."""
    reason_code: str = ""
    policy_ref: str = ""
    text: str = ""


RationaleLike = Union[Rationale, Mapping[str, str], str, None]


def _rationale(value: RationaleLike) -> Rationale:
    if value is None:
        return Rationale()
    if isinstance(value, Rationale):
        return value
    if isinstance(value, str):
        return Rationale(text=value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"reason_code", "policy_ref", "text"}
        if unknown:
            raise ValueError(f"rationale: unknown key(s) {sorted(unknown)}; "
                             "use reason_code, policy_ref, text")
        return Rationale(**value)
    raise TypeError(f"rationale must be a str, a mapping or aitrail.Rationale, "
                    f"not {type(value).__name__}")


def _rationale_parts(value: RationaleLike) -> tuple[str, str, str]:
    """(reason_code, policy_ref, text); a plain str or None without building a Rationale."""
    if value is None:
        return "", "", ""
    if type(value) is str:
        return "", "", value
    why = _rationale(value)
    return why.reason_code, why.policy_ref, why.text


class review:
    """``with aitrail.review(task_id=..., reviewer=...) as r: r.approve(...)``.

    Time spent runs from entering the block to the decision, unless the caller
    measured it elsewhere (a review UI) and passes ``time_spent_ms``. Leaving
    the block without a decision records decision ``none``.
    """

    def __init__(self, task_id: Optional[str] = None, *, reviewer: str,
                 original_output: Optional[str] = None, time_spent_ms: Optional[int] = None,
                 attributes: Optional[Mapping[str, Any]] = None):
        if not reviewer or not isinstance(reviewer, str):
            raise ValueError("review: reviewer must be a non-empty string")
        if time_spent_ms is not None and (not isinstance(time_spent_ms, int) or time_spent_ms < 0):
            raise ValueError("review: time_spent_ms must be a non-negative int")
        self._time_spent_ms = time_spent_ms
        self._task_id = task_id
        self._reviewer = reviewer
        self._original = original_output
        self._attributes = attributes
        self._draft: Optional[_Draft] = None
        self._t0 = 0

    def __enter__(self) -> "review":
        self._draft = _Draft("review", self._task_id, self._attributes,
                             {"reviewer_id": self._reviewer})
        self._t0 = time.monotonic_ns()
        return self

    def _decide(self, decision: str, rationale: RationaleLike,
                output: Optional[str] = None) -> None:
        draft = self._draft
        if draft is None:
            raise RuntimeError("review: decide inside the 'with' block")
        d = draft.fields
        if d.get("decision"):
            raise RuntimeError(f"review: decision already recorded ({d['decision']})")
        reason_code, policy_ref, text = _rationale_parts(rationale)
        d["decision"] = decision
        d["time_spent_ms"] = self._elapsed_ms()
        d["reason_code"], d["policy_ref"], d["rationale"] = reason_code, policy_ref, text
        if output is not None:
            d["modified_output"] = _as_text(output)
            original = self._original
            if original is None:
                original = _last_output.get(draft.task_id or "")
            d["original"] = original

    def _elapsed_ms(self) -> int:
        if self._time_spent_ms is not None:
            return self._time_spent_ms
        return (time.monotonic_ns() - self._t0) // 1_000_000

    def approve(self, rationale: RationaleLike = None) -> None:
        self._decide("approve", rationale)

    def reject(self, rationale: RationaleLike = None) -> None:
        self._decide("reject", rationale)

    def modify(self, output: Any, rationale: RationaleLike = None) -> None:
        self._decide("modify", rationale, output)

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        # __enter__ has set the draft: a with block enters before it exits. Not
        # checked at run time (an assert or cast is work on every review's path).
        draft: _Draft = self._draft  # type: ignore[assignment]
        d = draft.fields
        if not d.get("decision"):
            d["decision"] = "none"
            d["time_spent_ms"] = self._elapsed_ms()
        if exc is not None:
            d["error_type"], d["error_message"] = type(exc).__qualname__, str(exc)
        draft.end = _time_ns()
        _emit(draft)

    async def __aenter__(self) -> "review":
        return self.__enter__()

    async def __aexit__(self, exc_type: Optional[type[BaseException]],
                        exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.__exit__(exc_type, exc, tb)

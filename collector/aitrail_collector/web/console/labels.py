"""What the console shows for the codes records hold: the one mapping.

Decisions, event types and the outcome the charts give a task with no resolution
have a fixed label here; any other code (a reason code, a resolution outcome an
application chose) is shown with its underscores as spaces and a capital, so
"wrong_category" reads "Wrong category". Tables that quote exact values (CSV,
the search's filters) keep the codes.
"""

from __future__ import annotations

DECISIONS = {"approve": "Approved as is", "reject": "Rejected",
             "modify": "Modified by reviewer", "none": "No decision"}
EVENT_TYPES = {"model_call": "Model call", "review": "Review", "escalation": "Escalation",
               "resolution": "Resolution", "evaluation": "Evaluation",
               "data_access": "Data access", "redaction": "Erasure",
               "admin_action": "Admin action"}
OUTCOMES = {"unresolved": "Not resolved yet"}
_FIXED = {**OUTCOMES, **EVENT_TYPES, **DECISIONS}


def label(code: str) -> str:
    """The person-readable label of a code: a fixed one, else the code made readable."""
    if code in _FIXED:
        return _FIXED[code]
    text = code.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "(none)"

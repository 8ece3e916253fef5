"""PII redaction, done in the SDK before a record leaves the process.

Free text is scanned for e-mail addresses, phone numbers, US social security
numbers and payment card numbers (Luhn-checked); each match becomes a typed
token carrying a keyed hash, e.g. ``[EMAIL:9f2c0d1e4a7b]``. The hash is
HMAC-SHA256 under the operator's key, so equal values give equal tokens (a
reviewer can still see "same customer") while low-entropy values cannot be
brute-forced by whoever reads the ledger.

Each field can instead be declared ``hash`` (whole value replaced by its keyed
hash), ``reference`` (replaced by a reference from the operator's own store),
``drop`` (emptied) or ``keep`` (left as it is). Fields are named as in the
record: ``input``, ``output``, ``modified_output``, ``rationale``,
``escalation_reason``, ``error_message``, ``task_id``, ``reviewer_id``,
``actor``, ``resource``, ``attributes.<key>`` or ``parameters.<key>`` (a model
call's request parameters, scanned like attributes).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Callable, Mapping, Optional

SCAN, HASH, REFERENCE, DROP, KEEP = "scan", "hash", "reference", "drop", "keep"
ACTIONS = (SCAN, HASH, REFERENCE, DROP, KEEP)

# Fields scanned by default; identifiers are kept unless declared otherwise.
FREE_TEXT_FIELDS = ("input", "output", "modified_output", "diff", "rationale",
                    "escalation_reason", "error_message", "final_decision", "logprobs",
                    "explanation")

_EMAIL = r"(?P<EMAIL>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
_SSN = r"(?P<SSN>\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b)"
_CARD = r"(?P<CARD>\b\d(?:[ -]?\d){12,18}\b)"
_PHONE = (r"(?P<PHONE>(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])"
          r"\d{3,4}[ .-]?\d{3,4}\b)")
# Order matters: an SSN or card number must not be taken for a phone number.
_PATTERN = re.compile("|".join((_EMAIL, _SSN, _CARD, _PHONE)))
_CHEAP_FILTER = re.compile(r"@|\d{3}")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = ord(ch) - 48
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[str]:
    """The kinds of personal data the detectors find in ``text`` (EMAIL, PHONE, SSN,
    CARD), in order of appearance, each once; empty when none."""
    kinds: list[str] = []
    if not _CHEAP_FILTER.search(text):
        return kinds
    for m in _PATTERN.finditer(text):
        kind = m.lastgroup or ""
        if kind == "CARD" and not luhn_ok(re.sub(r"\D", "", m.group(0))):
            continue
        if kind not in kinds:
            kinds.append(kind)
    return kinds


class Redactor:
    """Applies a redaction policy to the fields of a record."""

    def __init__(self, key: bytes, policy: Optional[Mapping[str, str]] = None,
                 reference_store: Optional[Callable[[str, str], str]] = None,
                 enabled: bool = True):
        if not key:
            raise ValueError("redaction key must not be empty")
        policy = dict(policy or {})
        for name, action in policy.items():
            if action not in ACTIONS:
                raise ValueError(f"redaction policy for {name!r}: unknown action {action!r}; "
                                 f"use one of {', '.join(ACTIONS)}")
            if action == REFERENCE and reference_store is None:
                raise ValueError(f"redaction policy for {name!r} is 'reference' but no "
                                 "reference_store was configured")
        self._key = key
        self._policy = policy
        self._reference_store = reference_store
        self.enabled = enabled

    def keyed_hash(self, value: str) -> str:
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def action_for(self, field: str) -> str:
        if not self.enabled:
            return KEEP
        action = self._policy.get(field)
        if action is not None:
            return action
        if field in FREE_TEXT_FIELDS or field.startswith(("attributes.", "parameters.")):
            return SCAN
        return KEEP

    def apply(self, field: str, value: str) -> str:
        if not value:
            return value
        action = self.action_for(field)
        if action == KEEP:
            return value
        if action == SCAN:
            return self.scan(value)
        if action == HASH:
            return "hmac-sha256:" + self.keyed_hash(value)
        if action == DROP:
            return ""
        store = self._reference_store  # __init__ refused REFERENCE without a store
        return store(field, value) if store is not None else ""

    def scan(self, text: str) -> str:
        if not _CHEAP_FILTER.search(text):
            return text
        return _PATTERN.sub(self._token, text)

    def _token(self, m: re.Match[str]) -> str:
        kind = m.lastgroup
        value: str = m.group(0)
        if kind == "CARD":
            digits = re.sub(r"\D", "", value)
            if not luhn_ok(digits):
                return value
            value = digits
        elif kind == "PHONE":
            value = re.sub(r"[^\d+]", "", value)
        elif kind == "EMAIL":
            value = value.lower()
        return f"[{kind}:{self.keyed_hash(value)[:12]}]"

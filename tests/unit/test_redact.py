"""PII redaction: typed tokens with keyed hashes, per-field policies."""

import hashlib
import hmac

import pytest

from aitrail.record.redact import Redactor, luhn_ok

KEY = b"operator-key"


def _token(kind, value):
    return f"[{kind}:{hmac.new(KEY, value.encode(), hashlib.sha256).hexdigest()[:12]}]"


@pytest.fixture
def r():
    return Redactor(KEY)


def test_email_phone_ssn_and_card_become_typed_tokens(r):
    text = ("Mail Jane.Doe@Example.com or call +1 (415) 555-0134; SSN 123-45-6789; "
            "card 4111 1111 1111 1111.")
    out = r.scan(text)
    assert out == (f"Mail {_token('EMAIL', 'jane.doe@example.com')} or call "
                   f"{_token('PHONE', '+14155550134')}; SSN {_token('SSN', '123-45-6789')}; "
                   f"card {_token('CARD', '4111111111111111')}.")


def test_equal_values_give_equal_tokens_and_other_keys_give_other_tokens(r):
    assert r.scan("a@b.io") == r.scan("x a@b.io")[2:]
    assert Redactor(b"other").scan("a@b.io") != r.scan("a@b.io")


def test_card_numbers_failing_luhn_are_not_taken_for_cards(r):
    assert not luhn_ok("4111111111111112")
    assert "[CARD:" not in r.scan("order 4111 1111 1111 1112")


def test_invalid_ssn_ranges_are_left_alone(r):
    assert r.scan("ref 000-12-3456 and 666-12-3456") == "ref 000-12-3456 and 666-12-3456"


def test_text_without_pii_is_unchanged(r):
    text = "The invoice total was 42 EUR for 3 items, see section 12."
    assert r.scan(text) == text


def test_field_policies():
    refs = {}

    def store(field, value):
        refs[field] = value
        return f"crm://ref/{len(refs)}"

    r = Redactor(KEY, {"input": "keep", "output": "drop", "task_id": "hash",
                       "attributes.customer": "reference"}, reference_store=store)
    assert r.apply("input", "mail a@b.io") == "mail a@b.io"
    assert r.apply("output", "secret") == ""
    assert r.apply("task_id", "T-1") == "hmac-sha256:" + hmac.new(KEY, b"T-1", hashlib.sha256).hexdigest()
    assert r.apply("attributes.customer", "Jane") == "crm://ref/1" and refs == {"attributes.customer": "Jane"}
    assert r.apply("rationale", "a@b.io").startswith("[EMAIL:")   # default: scan free text
    assert r.apply("reviewer_id", "a@b.io") == "a@b.io"          # default: ids kept


def test_bad_policies_are_refused_clearly():
    with pytest.raises(ValueError, match="unknown action 'encrypt'"):
        Redactor(KEY, {"input": "encrypt"})
    with pytest.raises(ValueError, match="no reference_store"):
        Redactor(KEY, {"input": "reference"})
    with pytest.raises(ValueError, match="key"):
        Redactor(b"")


def test_redaction_can_be_switched_off():
    assert Redactor(KEY, enabled=False).apply("input", "a@b.io") == "a@b.io"

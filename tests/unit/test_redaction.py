"""Redaction of secret values: the `Redactor` and the log-record filter built on it."""

from __future__ import annotations

import logging
import sys

from autoinfer.secrets import MASK, RedactingFilter, Redactor


def test_every_occurrence_of_a_value_is_masked() -> None:
    redact = Redactor(["hunter22"])
    assert redact("pw=hunter22; again hunter22!") == f"pw={MASK}; again {MASK}!"


def test_values_shorter_than_four_characters_are_left_alone() -> None:
    redact = Redactor(["abc", "   x  "])
    assert redact("abc and x") == "abc and x"
    assert not redact


def test_the_longest_value_wins_when_values_overlap() -> None:
    redact = Redactor(["token", "token-with-suffix"])
    assert redact("token-with-suffix") == MASK


def test_regex_characters_in_values_are_literal() -> None:
    redact = Redactor(["a.b*c(d)"])
    assert redact("a.b*c(d) aXbbbc(d)") == f"{MASK} aXbbbc(d)"


def test_each_line_of_a_multi_line_value_is_masked_on_its_own() -> None:
    redact = Redactor(["-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA\n-----END KEY-----"])
    assert redact("MIIEpAIBAAKCAQEA") == MASK


def test_values_added_later_are_masked_and_none_are_forgotten() -> None:
    redact = Redactor(["first-value"])
    redact.add("second-value")
    assert redact("first-value second-value") == f"{MASK} {MASK}"


def test_text_without_values_is_returned_unchanged() -> None:
    assert Redactor()("nothing to hide") == "nothing to hide"


def make_record(msg: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def test_the_filter_masks_message_arguments() -> None:
    filter_ = RedactingFilter()
    redactor = Redactor(["s3cr3t-value"])
    filter_.add(redactor)
    record = make_record("login with %s as %s", "s3cr3t-value", "bob")
    assert filter_.filter(record) is True
    assert record.getMessage() == f"login with {MASK} as bob"


def test_the_filter_leaves_records_without_values_as_they_are() -> None:
    filter_ = RedactingFilter()
    filter_.add(Redactor(["s3cr3t-value"]))
    record = make_record("%d jobs", 3)
    filter_.filter(record)
    assert record.msg == "%d jobs" and record.args == (3,)


def test_the_filter_masks_exception_text() -> None:
    filter_ = RedactingFilter()
    redactor = Redactor(["s3cr3t-value"])
    filter_.add(redactor)
    try:
        raise RuntimeError("bad s3cr3t-value")
    except RuntimeError:
        record = make_record("failed", exc_info=sys.exc_info())
    filter_.filter(record)
    text = logging.Formatter().format(record)
    assert "RuntimeError: bad ***" in text and "s3cr3t-value" not in text


def test_the_filter_forgets_redactors_that_are_gone() -> None:
    filter_ = RedactingFilter()
    filter_.add(Redactor(["s3cr3t-value"]))  # no reference kept: collected at once
    record = make_record("s3cr3t-value")
    filter_.filter(record)
    assert record.getMessage() == "s3cr3t-value"


def test_a_record_with_a_bad_format_string_is_left_for_the_handler_to_report() -> None:
    filter_ = RedactingFilter()
    redactor = Redactor(["s3cr3t-value"])
    filter_.add(redactor)
    record = make_record("%d items", "not a number")
    assert filter_.filter(record) is True
    assert record.msg == "%d items"

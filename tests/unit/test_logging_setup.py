"""Service log lines: JSON or text, carrying the job and event they concern, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from autoinfer.logging_setup import configure_logging, log_context, make_formatter
from autoinfer.secrets import MASK, Redactor, install_log_redaction


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    """Root logging configured onto a buffer; the root logger's state restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        yield buffer, configure_logging("info", "json", stream=buffer)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_the_job_and_event_of_their_context(captured) -> None:  # type: ignore[no-untyped-def]
    buffer, _ = captured
    log = logging.getLogger("autoinfer.test")
    log.info("outside")
    with log_context(event_id=42):
        log.info("dispatching")
        with log_context(job_id="job-1"):
            log.warning("created %s", "job-1")
        log.info("after the job")
    first, second, third, fourth = lines(buffer)
    assert first["message"] == "outside" and "job_id" not in first and "event_id" not in first
    assert second["event_id"] == "42" and "job_id" not in second
    assert third == {
        **third,
        "level": "warning",
        "message": "created job-1",
        "job_id": "job-1",
        "event_id": "42",
    }
    assert fourth["event_id"] == "42" and "job_id" not in fourth
    assert first["logger"] == "autoinfer.test" and first["time"].endswith("+00:00")


def test_concurrent_jobs_in_threads_do_not_mix_their_ids(captured) -> None:  # type: ignore[no-untyped-def]
    buffer, _ = captured
    log = logging.getLogger("autoinfer.test")
    barrier = threading.Barrier(4)

    def job(index: int) -> None:
        with log_context(job_id=f"job-{index}"):
            barrier.wait()
            for _ in range(20):
                log.info("working on job-%d", index)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = lines(buffer)
    assert len(entries) == 80
    assert all(entry["message"] == f"working on {entry['job_id']}" for entry in entries)


def test_exceptions_are_one_json_line_with_the_traceback(captured) -> None:  # type: ignore[no-untyped-def]
    buffer, _ = captured
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("autoinfer.test").exception("it failed")
    [entry] = lines(buffer)
    assert entry["level"] == "error" and "ValueError: broken" in entry["exception"]


def test_secret_values_stay_redacted_in_json_lines(captured) -> None:  # type: ignore[no-untyped-def]
    buffer, _ = captured
    redactor = Redactor(["s3cr3t-value-123"])
    install_log_redaction(redactor)
    with log_context(job_id="job-9"):
        logging.getLogger("autoinfer.test").info("token is %s", "s3cr3t-value-123")
    [entry] = lines(buffer)
    assert entry["message"] == f"token is {MASK}" and entry["job_id"] == "job-9"
    assert "s3cr3t" not in buffer.getvalue()


def test_text_lines_end_with_the_ids_that_apply() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        configure_logging("info", "text", stream=buffer)
        log = logging.getLogger("autoinfer.test")
        log.info("plain")
        with log_context(job_id="j1", event_id=7):
            log.info("both")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    plain, both = buffer.getvalue().splitlines()
    assert plain.endswith("INFO autoinfer.test: plain")
    assert both.endswith("INFO autoinfer.test: both [job=j1 event=7]")


def test_configuring_twice_keeps_one_handler_and_the_root_filters(captured) -> None:  # type: ignore[no-untyped-def]
    buffer, _ = captured
    root = logging.getLogger()
    marker = logging.Filter("kept")
    root.addFilter(marker)
    try:
        configure_logging("info", "json", stream=buffer)
        ours = [h for h in root.handlers if getattr(h, "_autoinfer", False)]
        assert len(ours) == 1 and marker in root.filters
    finally:
        root.removeFilter(marker)


def test_text_log_lines_show_escape_sequences_and_newlines_inert() -> None:
    record = logging.LogRecord(
        "autoinfer.pipeline", logging.INFO, __file__, 1, "key %s", ("a\x1b[2Jb\nforged",), None
    )
    line = make_formatter("text").format(record)
    assert line.endswith("key a\\x1b[2Jb\\x0aforged")

"""Job log lines are bounded: read in pieces, cut at MAX_LINE_BYTES with a marker."""

from __future__ import annotations

import io

from autoinfer.log_lines import MAX_LINE_BYTES, cap_line, read_lines


def test_short_lines_pass_unchanged() -> None:
    assert list(read_lines(io.BytesIO(b"one\ntwo\nlast"))) == ["one\n", "two\n", "last"]
    assert cap_line("été") == "été"


def test_a_huge_line_is_cut_with_the_count_of_what_was_dropped() -> None:
    pipe = io.BytesIO(b"a" * (100 * MAX_LINE_BYTES + 7) + b"\nnext\n")
    first, second = read_lines(pipe)
    assert first == "a" * MAX_LINE_BYTES + f"… [cut: {99 * MAX_LINE_BYTES + 7} bytes]\n"
    assert second == "next\n"


def test_a_line_of_exactly_the_cap_is_kept_whole() -> None:
    line = b"b" * MAX_LINE_BYTES + b"\n"
    assert list(read_lines(io.BytesIO(line))) == [line.decode()]


def test_cap_line_cuts_on_a_character_boundary() -> None:
    cut = cap_line("é" * MAX_LINE_BYTES)  # 2 bytes each
    kept, marker = cut.split("…")
    assert kept == "é" * (MAX_LINE_BYTES // 2)
    assert marker == f" [cut: {MAX_LINE_BYTES} bytes]"


def test_a_line_cut_while_read_is_not_cut_again_when_stored() -> None:
    [line] = read_lines(io.BytesIO(b"z" * (MAX_LINE_BYTES + 100)))
    assert cap_line(line.rstrip("\n")) == line.rstrip("\n")
    assert line.endswith("… [cut: 100 bytes]\n")

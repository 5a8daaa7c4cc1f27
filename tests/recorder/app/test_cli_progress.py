"""The CLI's progress display (recorder/app/progress_display.py): which style where, and what each style writes."""

from __future__ import annotations

import io
import logging

import pytest

from recorder.app.progress_display import ProgressLine, ProgressStyle, progress_style
from recorder.domain.units import human_bytes, human_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_style_follows_the_terminal_and_the_log_format() -> None:
    assert progress_style(None, Terminal()) is ProgressStyle.BAR
    assert progress_style(None, io.StringIO()) is ProgressStyle.LINES
    assert progress_style("json", Terminal()) is ProgressStyle.LOG


def test_lines_come_at_each_tenth_and_the_end_says_100_percent() -> None:
    out, clock = io.StringIO(), Clock()
    line = ProgressLine("exporting cam1", 100.0, ProgressStyle.LINES, stream=out, clock=clock)
    for done in range(0, 100, 2):
        clock.now += 1
        line.update(float(done))
    line.update(99.0, ended=True)
    lines = out.getvalue().splitlines()
    assert [ln.split(":")[1].split("%")[0].strip() for ln in lines] == [str(p) for p in range(0, 100, 10)] + ["100"]
    assert "about" in lines[5] and "left" in lines[5]  # an estimate once it has seen enough
    assert "\r" not in out.getvalue()


def test_the_bar_is_redrawn_in_place_and_its_line_ended() -> None:
    out, clock = io.StringIO(), Clock()
    line = ProgressLine("x", 10.0, ProgressStyle.BAR, stream=out, clock=clock)
    line.update(5.0)
    line.update(6.0)  # within REDRAW_EVERY: not drawn
    clock.now += 1
    line.update(10.0, ended=True)
    line.close()
    text = out.getvalue()
    assert text.count("\r\x1b[K[") == 2 and text.endswith("100% (10.0 s of 10.0 s)\n")
    assert "[" + "#" * 12 + "-" * 12 + "]" in text


def test_with_a_log_format_progress_is_log_records(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="recorder.progress"):
        line = ProgressLine("transcoding", 4.0, ProgressStyle.LOG, stream=out)
        line.update(4.0, ended=True)
    assert out.getvalue() == "" and [r.getMessage() for r in caplog.records] == ["transcoding: 100% (4.0 s of 4.0 s)"]


def test_units_are_binary() -> None:
    assert [human_bytes(n) for n in (512, 2048, 5 * 1024**2, 3 * 1024**3)] == ["512 B", "2.0 KiB", "5.0 MiB", "3.0 GiB"]
    assert [human_seconds(s) for s in (4.2, 754, 3723)] == ["4.2 s", "12:34", "1:02:03"]

"""Progress of the CLI's long jobs (--export, --transcode): a bar on a terminal, plain lines otherwise.

FFmpeg's own `-progress pipe:1` (recorder/ffmpeg/progress.py parses it) says how far into the media a job is;
this module only shows it. On a terminal one line is redrawn in place; when stderr is not a terminal (a
pipe, a file, cron) a plain line is written every tenth of the way, and with `--log.format` the same lines
become log records, so a log shipper sees only records it can parse.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from recorder.domain.compat import StrEnum
from recorder.domain.units import human_seconds

log = logging.getLogger("recorder.progress")

BAR_WIDTH = 24
# A terminal is redrawn at most this often; FFmpeg reports twice a second.
REDRAW_EVERY = 0.25
# Without a terminal: a line at each tenth of the way, and at least this often while it moves.
LINE_EVERY_SECONDS = 30.0


class ProgressStyle(StrEnum):
    BAR = "bar"
    LINES = "lines"
    LOG = "log"


def progress_style(log_format: str | None, stream: TextIO | None = None) -> ProgressStyle:
    """A bar on a terminal; log records with --log.format; plain lines when stderr is a pipe or a file."""
    if log_format is not None:
        return ProgressStyle.LOG
    stream = stream or sys.stderr
    return ProgressStyle.BAR if stream.isatty() else ProgressStyle.LINES


class ProgressLine:
    """How far one job is: `update(done)` as FFmpeg reports, `close()` at the end (the bar's line ends)."""

    def __init__(
        self,
        what: str,
        total: float,
        style: ProgressStyle,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[float, float], str] | None = None,
    ) -> None:
        self.what = what
        self.total = max(total, 0.0)
        self.style = style
        self.stream = stream or sys.stderr
        self._clock = clock
        self._started = clock()
        self._describe = describe or (lambda done, total: f"{human_seconds(done)} of {human_seconds(total)}")
        self._last_draw = float("-inf")
        self._last_tenth = -1
        self._drawn = False

    def fraction(self, done: float) -> float:
        return min(1.0, done / self.total) if self.total > 0 else 0.0

    def text(self, done: float) -> str:
        fraction = self.fraction(done)
        elapsed = self._clock() - self._started
        eta = ""
        if 0.02 < fraction < 1.0 and elapsed > 1.0:
            eta = f", about {human_seconds(elapsed * (1 - fraction) / fraction)} left"
        return f"{self.what}: {fraction * 100:3.0f}% ({self._describe(done, self.total)}{eta})"

    def update(self, done: float, *, ended: bool = False) -> None:
        """`done` of `total` (seconds of media); `ended` when FFmpeg says it has finished (progress=end)."""
        if ended:
            done = max(done, self.total)
        now = self._clock()
        fraction = self.fraction(done)
        if self.style is ProgressStyle.BAR:
            if now - self._last_draw < REDRAW_EVERY and fraction < 1.0:
                return
            filled = round(fraction * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r\x1b[K[{bar}] {self.text(done)}")
            self.stream.flush()
            self._drawn = True
            self._last_draw = now
            return
        tenth = int(fraction * 10)
        if tenth == self._last_tenth and now - self._last_draw < LINE_EVERY_SECONDS:
            return
        self._last_tenth, self._last_draw = tenth, now
        self._emit(self.text(done))

    def _emit(self, text: str) -> None:
        if self.style is ProgressStyle.LOG:
            log.info("%s", text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar's line, so what follows starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started

"""FFmpeg's `-progress` output: blocks of key=value lines ending in `progress=continue|end`."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Progress:
    frame: int = 0
    fps: float = 0.0
    bitrate_bits_per_second: float = 0.0
    total_size: int = 0
    out_time_seconds: float = 0.0
    dup_frames: int = 0
    drop_frames: int = 0
    speed: float = 0.0
    ended: bool = False


def _number(value: str) -> float:
    """FFmpeg prints N/A before it knows a value; that reads as zero."""
    try:
        return float(value)
    except ValueError:
        return 0.0


def _bitrate(value: str) -> float:
    # FFmpeg prints e.g. "8012.4kbits/s".
    return _number(value.removesuffix("kbits/s")) * 1000.0


def _speed(value: str) -> float:
    return _number(value.strip().removesuffix("x"))


def _out_time_us(value: str) -> float:
    return _number(value) / 1e6


# key -> (Progress field, converter); unknown keys such as stream_0_0_q are skipped.
_FIELDS = {
    "frame": ("frame", lambda v: int(_number(v))),
    "fps": ("fps", _number),
    "bitrate": ("bitrate_bits_per_second", _bitrate),
    "total_size": ("total_size", lambda v: int(_number(v))),
    # out_time_ms is microseconds too (a historical FFmpeg misnomer); out_time_us says what it is.
    "out_time_us": ("out_time_seconds", _out_time_us),
    "dup_frames": ("dup_frames", lambda v: int(_number(v))),
    "drop_frames": ("drop_frames", lambda v: int(_number(v))),
    "speed": ("speed", _speed),
}


# Rate over the last few seconds: steady enough to read, quick enough to show a camera that stops sending.
OUTPUT_RATE_WINDOW_SECONDS = 5.0
# Progress comes once a second; the open segment's size is read at most this often, and in between a block
# carries the last rate measured. The window still holds two or three samples.
OUTPUT_RATE_SAMPLE_EVERY = 2.0


class OutputRateMeter:
    """Bytes per second one FFmpeg actually writes into its segments, from the open segment's growth.

    FFmpeg's own `bitrate` and `total_size` progress fields are always N/A with the segment muxer (checked
    with FFmpeg 5.1), so the rate is measured where the bytes land: the file FFmpeg holds open in the
    camera's folder (found through /proc/PID/fd), its growth between samples, and the rest of the previous
    file when FFmpeg moves on to the next segment.

    Cheap by design, as it runs for every camera all the time: the file's size is read at most every
    `sample_every` seconds (sooner when FFmpeg moved on to another file: one readlink per call tells), and
    the descriptor the segment was found under is remembered, since FFmpeg opens the next segment under the
    same number once it closes one; only when that descriptor no longer leads into the folder is
    /proc/PID/fd listed again.
    """

    def __init__(
        self,
        pid: int,
        output_dir: Path,
        *,
        window_seconds: float = OUTPUT_RATE_WINDOW_SECONDS,
        sample_every: float = OUTPUT_RATE_SAMPLE_EVERY,
        clock: Callable[[], float] = time.monotonic,
        proc: Path = Path("/proc"),
    ) -> None:
        self._fd_dir = f"{proc / str(pid) / 'fd'}/"
        self._output_dir = str(output_dir.resolve()) + os.sep
        self._window = window_seconds
        self._sample_every = sample_every
        self._clock = clock
        self._segment_fd: str | None = None  # the descriptor the open segment was last found under
        self._open_path: str | None = None
        self._open_size = 0
        self._written = 0  # bytes seen written since the first sample
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._rate = 0.0
        self.scans = 0  # listings of /proc/PID/fd so far (the costly part; the tests and benchmark read it)

    def _find_open_segment(self) -> str | None:
        """The path of the file FFmpeg has open in its output folder, if any."""
        if self._segment_fd is not None:
            try:
                target = os.readlink(self._fd_dir + self._segment_fd)
            except OSError:  # closed between segments, or FFmpeg has ended
                target = None
            if target is not None and target.startswith(self._output_dir):
                return target
        self.scans += 1
        try:
            fds = os.listdir(self._fd_dir)
        except OSError:  # FFmpeg has ended
            return None
        for fd in fds:
            try:
                target = os.readlink(self._fd_dir + fd)
            except OSError:
                continue
            if target.startswith(self._output_dir):
                self._segment_fd = fd
                return target
        return None

    def _same_segment_open(self) -> bool:
        """The remembered descriptor still leads to the segment measured last (one readlink): a segment change
        is seen at the first progress block after it, so a short segment's bytes are never skipped."""
        if self._segment_fd is None or self._open_path is None:
            return False
        try:
            return os.readlink(self._fd_dir + self._segment_fd) == self._open_path
        except OSError:
            return False

    @staticmethod
    def _size(path: str) -> int | None:
        try:
            return os.stat(path).st_size
        except OSError:  # deleted or discarded meanwhile
            return None

    def sample(self) -> float:
        """Record what was written since the last sample; return bytes per second over the window.

        Called sooner than `sample_every` after the last sample, with the same file open, it returns the last
        rate after one readlink.
        """
        now = self._clock()
        if self._samples and now - self._samples[-1][0] < self._sample_every and self._same_segment_open():
            return self._rate
        path = self._find_open_segment()
        size = self._size(path) if path is not None else None
        if self._open_path is not None and path != self._open_path:
            # FFmpeg closed the previous segment: count its last bytes, then the new file from zero.
            final = self._size(self._open_path)
            if final is not None:
                self._written += max(0, final - self._open_size)
            self._open_path, self._open_size = None, 0
        if path is not None and size is not None:
            if self._open_path is None:
                # A new file is counted from zero, except the very first one, which is the baseline.
                self._written += size if self._samples else 0
            else:
                self._written += max(0, size - self._open_size)
            self._open_path, self._open_size = path, size
        self._samples.append((now, self._written))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()
        first_time, first_written = self._samples[0]
        elapsed = now - first_time
        self._rate = (self._written - first_written) / elapsed if elapsed > 0 else 0.0
        return self._rate


class ProgressParser:
    """Feeds lines, returns a Progress each time a block is complete.

    With an `OutputRateMeter`, a block whose bitrate FFmpeg reports as N/A (always, with the segment muxer)
    carries the measured rate instead.
    """

    def __init__(self, output_rate: OutputRateMeter | None = None) -> None:
        self._raw: dict[str, str] = {}  # the block being read: key -> value as FFmpeg wrote it
        self._output_rate = output_rate

    def feed(self, line: str) -> Progress | None:
        """One line; the block's Progress when the line ends one."""
        blocks = self.feed_lines((line,))
        return blocks[-1] if blocks else None

    def feed_lines(self, lines: Iterable[str]) -> list[Progress]:
        """Several lines (what one read of FFmpeg's stdout brought); the blocks they complete, in order.

        Values are kept as text until their block ends, and only the fields of Progress are converted then:
        this runs for every camera about once a second.
        """
        done: list[Progress] = []
        raw = self._raw
        for line in lines:
            key, sep, value = line.partition("=")
            if not sep:
                continue
            if key == "progress":
                done.append(self._complete(raw, ended=value.strip() == "end"))
                raw = self._raw = {}
            else:
                raw[key] = value
        return done

    def _complete(self, raw: dict[str, str], *, ended: bool) -> Progress:
        block: dict[str, object] = {}
        for key, (field, convert) in _FIELDS.items():
            value = raw.get(key)
            if value is not None:
                block[field] = convert(value.strip())
        if self._output_rate is not None and not block.get("bitrate_bits_per_second"):
            block["bitrate_bits_per_second"] = self._output_rate.sample() * 8
        return Progress(**block, ended=ended)  # type: ignore[arg-type]

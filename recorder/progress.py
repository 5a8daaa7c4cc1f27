"""FFmpeg's `-progress` output: blocks of key=value lines ending in `progress=continue|end`."""

from __future__ import annotations

from dataclasses import dataclass


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


class ProgressParser:
    """Feeds lines, returns a Progress each time a block is complete."""

    def __init__(self) -> None:
        self._block: dict[str, object] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key == "progress":
            block, self._block = self._block, {}
            return Progress(**block, ended=value.strip() == "end")  # type: ignore[arg-type]
        spec = _FIELDS.get(key)
        if spec is not None:
            self._block[spec[0]] = spec[1](value.strip())
        return None

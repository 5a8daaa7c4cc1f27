"""Classify FFmpeg's stderr into restart reasons and scrub credentials from it before logging."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from recorder.domain.compat import StrEnum
from recorder.domain.vocabulary import RestartReason


class StderrReason(StrEnum):
    """What FFmpeg's stderr says went wrong."""

    DEVICE_GONE = "device_gone"
    DEVICE_BUSY = "device_busy"
    PERMISSION = "permission"
    BAD_OPTION = "bad_option"
    # The driver silently gave another frame size than asked for.
    SIZE_CHANGED = "size_changed"
    # Dequeued buffers flagged corrupt or shorter than the frame size.
    CORRUPT_DATA = "corrupt_data"
    # ENOSPC or EDQUOT writing the output: retention can often cure it at once.
    DISK_FULL = "disk_full"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class _Rule:
    """One stderr pattern and the reason it means."""

    pattern: re.Pattern[str]
    reason: StderrReason


def _rule(pattern: str, reason: StderrReason) -> _Rule:
    return _Rule(re.compile(pattern), reason)


_V4L2_NODE = r"/dev/(?:video|v4l)\S*"

# The first rule that matches a line decides that line, so specific rules precede generic ones:
# "Cannot open video device /dev/video0: Permission denied" is a permission problem, not a gone device.
_RULES: tuple[_Rule, ...] = (
    _rule(r"Device or resource busy", StderrReason.DEVICE_BUSY),
    # ENOSPC from STREAMON: the USB controller's bandwidth is taken by other cameras, a contention
    # that clears when they stop, like a busy device.
    _rule(r"VIDIOC_STREAMON\): No space left on device", StderrReason.DEVICE_BUSY),
    # Any other ENOSPC is the output's filesystem (av_interleaved_write_frame, opening a segment, writing
    # a header or trailer), as is a quota.
    _rule(r"No space left on device|Disk quota exceeded", StderrReason.DISK_FULL),
    _rule(r"Permission denied|Operation not permitted", StderrReason.PERMISSION),
    # ENODEV/ENXIO: the node is still open but its camera was unplugged.
    _rule(r"No such device", StderrReason.DEVICE_GONE),
    _rule(rf"{_V4L2_NODE}: No such file or directory", StderrReason.DEVICE_GONE),
    # EIO is what uvcvideo returns to a streaming open after the camera dropped off the bus.
    _rule(
        rf"(?:Cannot open video device|ioctl\(VIDIOC_\w+\)|{_V4L2_NODE}).*: Input/output error",
        StderrReason.DEVICE_GONE,
    ),
    # The driver rejected the requested format/size/rate: a configuration the camera cannot do.
    _rule(r"ioctl\(VIDIOC_(?:S_FMT|TRY_FMT|S_PARM)\): Invalid argument", StderrReason.BAD_OPTION),
    _rule(
        r"Unrecognized option|Option \S+ not found|Option not found|Error setting option"
        r"|Error parsing options|Unknown encoder|Encoder \S+ not found|Unknown decoder|Unknown input format"
        r"|Unable to find a suitable output format|No such filter|Cannot find a proper format for codec"
        r"|Not a video capture device|Invalid (?:video size|frame rate|pixel format)",
        StderrReason.BAD_OPTION,
    ),
    _rule(r"The V4L2 driver changed the video from", StderrReason.SIZE_CHANGED),
    _rule(
        r"Dequeued v4l2 buffer contains corrupted data|Dequeued v4l2 buffer contains \d+ bytes, but \d+ were expected",
        StderrReason.CORRUPT_DATA,
    ),
    # AVERROR_INVALIDDATA: the bytes that arrived could not be demuxed. That is bad data from the
    # source (a glitching camera or stream), not a bad command line, so it is not bad_option.
    _rule(r"Invalid data found when processing input", StderrReason.CORRUPT_DATA),
)

# Higher wins regardless of position; equal weight goes to the later line. Fatal reasons end the
# process, so they beat warnings; a size change beats corrupt buffers because a changed size is what
# makes buffers arrive with the wrong byte count.
_WEIGHT: dict[StderrReason, int] = {
    StderrReason.DEVICE_GONE: 3,
    StderrReason.DEVICE_BUSY: 3,
    StderrReason.PERMISSION: 3,
    StderrReason.BAD_OPTION: 3,
    StderrReason.DISK_FULL: 3,
    StderrReason.SIZE_CHANGED: 2,
    StderrReason.CORRUPT_DATA: 1,
    StderrReason.UNKNOWN: 0,
}

_RESTART_FOR_REASON: dict[StderrReason, RestartReason] = {
    StderrReason.DEVICE_GONE: RestartReason.DEVICE_GONE,
    StderrReason.DEVICE_BUSY: RestartReason.DEVICE_BUSY,
    StderrReason.PERMISSION: RestartReason.CONFIG,
    StderrReason.BAD_OPTION: RestartReason.CONFIG,
    StderrReason.DISK_FULL: RestartReason.DISK_FULL,
}


def classify_line(line: str) -> StderrReason:
    """Return the reason one stderr line shows, or UNKNOWN."""
    for rule in _RULES:
        if rule.pattern.search(line):
            return rule.reason
    return StderrReason.UNKNOWN


def classify(lines: Iterable[str]) -> StderrReason:
    """Return the most decisive reason in FFmpeg stderr lines (oldest first): the last fatal one, if any."""
    best = StderrReason.UNKNOWN
    for line in lines:
        reason = classify_line(line)
        if reason is not StderrReason.UNKNOWN and _WEIGHT[reason] >= _WEIGHT[best]:
            best = reason
    return best


def restart_reason(reason: StderrReason, *, exit_code: int | None, signalled: bool) -> RestartReason:
    """Map a stderr reason and how FFmpeg ended to the restart reason (only those stderr can decide)."""
    fixed = _RESTART_FOR_REASON.get(reason)
    if fixed is not None:
        return fixed
    # An unknown exit code (None) is not a clean exit either.
    return RestartReason.CRASHED if signalled or exit_code != 0 else RestartReason.EXITED


# userinfo runs to the LAST "@" before the host, so a password containing "@" is masked whole.
_URL_USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#'\"]*)@")
_QUERY_SECRET_RE = re.compile(
    r"(?P<key>[?&;](?:user|username|password|passwd|pwd|pass|token|auth|secret|api_?key)=)[^&\s'\"]*",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    masked = "***:***" if ":" in match.group("userinfo") else "***"
    return f"{match.group('scheme')}{masked}@"


def scrub(line: str) -> str:
    """Return line with URL credentials masked (rtsp://user:pass@host -> rtsp://***:***@host)."""
    line = _URL_USERINFO_RE.sub(_mask_userinfo, line)
    return _QUERY_SECRET_RE.sub(r"\g<key>***", line)

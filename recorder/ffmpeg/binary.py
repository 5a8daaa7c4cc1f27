"""Which FFmpeg runs: the original's order (jellyfin-ffmpeg first), overridable in config."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.config import SystemConfig
from recorder.ffmpeg.process import die_with_parent

# jellyfin-ffmpeg is a build with working QSV; ffmpeg-qsv is the original's own build; then PATH.
FFMPEG_CANDIDATES = ("/usr/lib/jellyfin-ffmpeg/ffmpeg", "/usr/local/bin/ffmpeg-qsv", "ffmpeg")
FFPROBE_BESIDE = {"ffmpeg": "ffprobe", "ffmpeg-qsv": "ffprobe-qsv"}


@dataclass(frozen=True)
class FFmpegTools:
    ffmpeg: str | None  # None: no FFmpeg was found
    ffprobe: str | None


def _which(program: str) -> str | None:
    if os.sep in program:
        return program if os.access(program, os.X_OK) else None
    return shutil.which(program)


def find_tools(system: SystemConfig) -> FFmpegTools:
    """FFmpeg and its ffprobe: configured paths win, then the original's search order."""
    ffmpeg = _which(system.ffmpeg) if system.ffmpeg else next(filter(None, map(_which, FFMPEG_CANDIDATES)), None)
    if system.ffprobe:
        ffprobe = _which(system.ffprobe)
    elif ffmpeg:
        path = Path(ffmpeg)
        beside = path.with_name(FFPROBE_BESIDE.get(path.name, "ffprobe"))
        ffprobe = str(beside) if os.access(beside, os.X_OK) else _which("ffprobe")
    else:
        ffprobe = _which("ffprobe")
    return FFmpegTools(ffmpeg, ffprobe)


# `ffmpeg -version` answers in milliseconds; a binary that takes longer is broken or hung (a wrapper
# waiting on a device, an NFS mount gone away), and the daemon must not wait for it.
VERSION_PROBE_TIMEOUT = 5.0
# While the version is unknown it is asked again this often: a binary fixed or remounted later shows up
# in camera_recorder_build_info without a restart.
VERSION_RETRY_EVERY = 60.0
UNKNOWN_VERSION = "unknown"

log = logging.getLogger(__name__)
_known_versions: dict[str, str] = {}


def _output_of(argv: list[str], timeout: float) -> str | None:
    """stdout of a short command, or None when it cannot run or outlives `timeout` (then its group is killed)."""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,  # its own group: a hung wrapper's children are killed with it
            preexec_fn=die_with_parent,  # a probe still hanging when the daemon exits goes with it
        )  # fmt: skip
    except OSError:
        return None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        return None
    return out


def probe_ffmpeg_version(ffmpeg: str, timeout: float = VERSION_PROBE_TIMEOUT) -> str | None:
    """The version FFmpeg reports of itself, such as 5.1.6-0+deb12u1, or None when it does not say."""
    out = _output_of([ffmpeg, "-hide_banner", "-version"], timeout)
    match = re.search(r"ffmpeg version (\S+)", out or "")
    return match[1] if match else None


def ffmpeg_version(ffmpeg: str, timeout: float = VERSION_PROBE_TIMEOUT) -> str:
    """The version of `ffmpeg`, or 'unknown'; only a known version is remembered, so 'unknown' is asked again."""
    known = _known_versions.get(ffmpeg)
    if known is not None:
        return known
    version = probe_ffmpeg_version(ffmpeg, timeout)
    if version is None:
        return UNKNOWN_VERSION
    _known_versions[ffmpeg] = version
    return version


class FFmpegVersion:
    """FFmpeg's version for build_info, probed in a background thread so a hung binary never delays start.

    `value` is 'unknown' until a probe answers; while unknown, the probe runs again every `retry_every` s.
    """

    def __init__(
        self,
        ffmpeg: str,
        *,
        timeout: float = VERSION_PROBE_TIMEOUT,
        retry_every: float = VERSION_RETRY_EVERY,
        probe: Callable[[str, float], str | None] = probe_ffmpeg_version,
    ) -> None:
        self.ffmpeg = ffmpeg
        self._timeout = timeout
        self._retry_every = retry_every
        self._probe = probe
        self._value = _known_versions.get(ffmpeg, UNKNOWN_VERSION)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> str:
        return self._value

    def start(self) -> None:
        if self._value != UNKNOWN_VERSION or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._probe_version, name="ffmpeg-version", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _probe_version(self) -> None:
        warned = False
        while not self._stop.is_set():
            version = self._probe(self.ffmpeg, self._timeout)
            if version is not None:
                _known_versions[self.ffmpeg] = version
                self._value = version
                if warned:
                    log.info("FFmpeg %s now reports version %s", self.ffmpeg, version)
                return
            if not warned:
                log.warning(
                    "FFmpeg %s did not report its version within %g s; asking again every %g s",
                    self.ffmpeg, self._timeout, self._retry_every,
                )  # fmt: skip
                warned = True
            self._stop.wait(self._retry_every)


@functools.cache
def ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    """Names of the encoders this FFmpeg was built with."""
    out = _output_of([ffmpeg, "-hide_banner", "-encoders"], timeout=10)
    if out is None:
        return frozenset()
    # Lines look like " V....D libx264              libx264 H.264 / AVC ...".
    return frozenset(m[1] for m in re.finditer(r"^\s*[VAS][.A-Z]{5}\s+(\S+)", out, re.MULTILINE))

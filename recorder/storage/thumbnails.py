"""A recent picture of each camera: a JPEG of the last keyframe of its newest completed segment.

Made lazily when somebody asks, at most once per segment, from the finished file (never from the live
FFmpeg), by a short-lived FFmpeg that decodes keyframes only. Generations are bounded in number and time,
so a page reloaded by many browsers at once costs at most `max_concurrent` decodes.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

THUMBNAIL_WIDTH = 480
# Seek this far before a segment's end, then decode every keyframe up to the end and keep the last: a
# camera's GOP is a few seconds at most, so a handful of keyframes are decoded, not the whole segment.
TAIL_SECONDS = 10
GENERATION_TIMEOUT = 10.0
MAX_CONCURRENT = 2
# How long a request waits for a free generation slot before it is told to come back.
SLOT_WAIT = 5.0


@dataclass(frozen=True)
class Thumbnail:
    segment: str  # file name of the segment it shows
    jpeg: bytes | None  # None: the segment yielded no picture (it is not tried again)
    error: str | None = None


def thumbnail_argv(ffmpeg: str, segment: Path, output: Path, *, from_end: bool) -> list[str]:
    """Keyframes only (`-skip_frame nokey`), scaled to THUMBNAIL_WIDTH, each written over the last."""
    seek = ["-sseof", f"-{TAIL_SECONDS}"] if from_end else []
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-skip_frame", "nokey", *seek, "-i", str(segment),
        "-map", "0:v:0", "-an", "-vf", f"scale={THUMBNAIL_WIDTH}:-2", "-fps_mode", "passthrough",
        "-q:v", "5", "-update", "1", "-f", "image2", str(output),
    ]  # fmt: skip


class ThumbnailCache:
    """The newest thumbnail per camera, made on demand."""

    def __init__(
        self,
        ffmpeg: str,
        *,
        timeout: float = GENERATION_TIMEOUT,
        max_concurrent: int = MAX_CONCURRENT,
        run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
    ) -> None:
        self._ffmpeg = ffmpeg
        self._timeout = timeout
        self._run = run
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._cache: dict[str, Thumbnail] = {}
        self._camera_locks: dict[str, threading.Lock] = {}
        self.generations = 0  # FFmpeg runs so far (tests and the benchmark read it)

    def cached(self, camera: str) -> Thumbnail | None:
        return self._cache.get(camera)

    def get(self, camera: str, segment: Path) -> Thumbnail | None:
        """The thumbnail of `segment`, made now if it was not yet; None when every slot stayed busy."""
        current = self._cache.get(camera)
        if current is not None and current.segment == segment.name:
            return current
        with self._lock:
            camera_lock = self._camera_locks.setdefault(camera, threading.Lock())
        # One generation per camera at a time: concurrent requests for the same segment wait for the first.
        with camera_lock:
            current = self._cache.get(camera)
            if current is not None and current.segment == segment.name:
                return current
            if not self._slots.acquire(timeout=SLOT_WAIT):
                return current  # an older picture beats none; the next request tries again
            try:
                made = self._generate(segment)
            finally:
                self._slots.release()
            self._cache[camera] = made
            return made

    def _generate(self, segment: Path) -> Thumbnail:
        self.generations += 1
        error = "no keyframe found"
        with tempfile.TemporaryDirectory(prefix="camera-recorder-thumb-") as tmp:
            output = Path(tmp) / "thumb.jpg"
            # From the end first; a segment whose end cannot be found (cut off by a crash) is read from the start.
            for from_end in (True, False):
                try:
                    result = self._run(
                        thumbnail_argv(self._ffmpeg, segment, output, from_end=from_end),
                        capture_output=True,
                        timeout=self._timeout,
                        check=False,
                    )
                except subprocess.TimeoutExpired:
                    error = f"FFmpeg took longer than {self._timeout:g} s"
                    break
                except OSError as exc:
                    error = f"cannot run FFmpeg: {exc}"
                    break
                if result.returncode == 0 and output.exists() and output.stat().st_size > 0:
                    return Thumbnail(segment.name, output.read_bytes())
                stderr = result.stderr.decode(errors="replace").strip().splitlines()
                error = stderr[-1] if stderr else f"FFmpeg exit status {result.returncode}"
        log.warning("no thumbnail from %s: %s", segment, error)
        return Thumbnail(segment.name, None, error)

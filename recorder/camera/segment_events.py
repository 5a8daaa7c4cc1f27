"""What becomes of the segments one camera's FFmpeg runs report: storage accounting, the index, the snapshot."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from recorder.camera.report import CameraReport
from recorder.footage.segments import CompletedSegment, parse_segment_name


class SegmentEvents:
    """A kept segment goes to storage accounting and the snapshot; a removed one leaves the index."""

    def __init__(
        self,
        camera_id: str,
        report: CameraReport,
        publish: Callable[..., None],
        *,
        on_segment: Callable[[CompletedSegment], None],
        on_discard: Callable[[Path], None],
        log: logging.LoggerAdapter[logging.Logger],
        clock: Callable[[], float],
    ) -> None:
        self._camera_id = camera_id
        self._report = report
        self._publish = publish  # the supervisor's publish: the snapshot with these changes
        self._on_segment = on_segment
        self._on_discard = on_discard
        self._log = log
        self._clock = clock

    def done(self, path: Path, duration: float) -> None:
        """FFmpeg listed a segment as complete (or a cut one was kept): count it and hand it to storage."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            self._log.warning("completed segment %s is gone: %s", path, exc)
            return
        parsed = parse_segment_name(path.name)
        start = parsed.start if parsed else self._clock() - duration
        self._publish(**self._report.segment_completed(size, duration))
        self._log.info("segment %s completed: %.1f s, %d bytes", path.name, duration, size)
        try:
            self._on_segment(CompletedSegment(self._camera_id, path, start, duration, size))
        except Exception:
            self._log.exception("storage accounting failed for %s", path)

    def discarded(self, path: Path, reason: str) -> None:
        """A segment without a decodable frame was removed: counted, and forgotten by the index."""
        self._report.discarded(reason)
        self._on_discard(path)
        self._log.warning("removed %s segment %s (no decodable frame)", reason, path.name)
        self._publish()

"""The daemon's night-transcoding worker, when enabled: started after the cameras, yielding to every one of
them (see recorder/transcoding/gate), stopped last, and replaced by a reload that changes what it is built from."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from recorder.transcoding.worker import TranscodeWorker

# Logged under the daemon's name: operators grep for recorder.daemon.
log = logging.getLogger("recorder.daemon")


class TranscoderSlot:
    """Holds the running worker, or None: published only once its thread runs, unpublished before it stops,
    so that the liveness check never reads a worker without a thread as a dead one."""

    def __init__(self, build: Callable[[], TranscodeWorker | None]) -> None:
        self._build = build  # from the configuration of the moment; None when transcoding is disabled
        self.worker: TranscodeWorker | None = None

    def start(self) -> None:
        worker = self._build()
        if worker is not None:
            try:
                worker.start()
            except (OSError, RuntimeError) as exc:
                log.error("transcoding: not started: %s", exc)
                worker = None
        self.worker = worker

    def request_stop(self) -> None:
        """Asked first at the daemon's stop: its FFmpeg dies within a poll, the segment stays as recorded."""
        if self.worker is not None:
            self.worker.request_stop()

    def stop(self) -> None:
        # Unpublished first: its thread ending is no death for the liveness check.
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()

    def alive(self) -> bool:
        worker = self.worker  # read once: a reload may unpublish it meanwhile
        return worker is None or worker.alive

    def size_ratio(self) -> float | None:
        """The measured transcoded/original size ratio retention's capacity estimate uses (None: none yet)."""
        worker = self.worker
        return worker.transcoder.size_ratio() if worker is not None else None

    def busy_paths(self) -> list[Path]:
        """The segment the worker's FFmpeg reads now, which retention must not delete."""
        worker = self.worker
        return worker.busy_paths() if worker is not None else []

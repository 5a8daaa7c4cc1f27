"""The recordings' lock: one transcoder per recordings folder (the daemon's worker or one `--transcode`)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from recorder.transcoding.ledger import state_folder

LOCK_NAME = "lock"


class TranscoderBusy(RuntimeError):
    """Another transcoder (the daemon's, or another `--transcode`) holds the recordings' lock."""


class RecordingsLock:
    """An exclusive flock on `<base>/.transcoding/lock`; the kernel drops it with the process that held it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or raise TranscoderBusy."""
        folder = state_folder(self.base)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TranscoderBusy(f"another transcoder works on {self.base} (the daemon's?)") from None
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

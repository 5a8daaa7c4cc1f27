"""The persistent marker of segments already transcoded or not worth it, so none is tried twice.

One JSON object per line in `<base>/.transcoding/ledger.ndjson`, appended and fsynced before the step it
records takes effect. A line cut by a crash is ignored; the file is rewritten (atomically) without the
segments that no longer exist when the worker starts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FOLDER = ".transcoding"  # under the recordings base; a leading dot: no camera id starts with one
LEDGER_NAME = "ledger.ndjson"
# A segment that failed this many times (verification or FFmpeg) is left as recorded for good.
MAX_FAILURES = 2
# Results that end a segment's story: it is never tried again.
FINAL_RESULTS = frozenset({"transcoded", "skipped_small_savings"})


@dataclass(frozen=True)
class LedgerEntry:
    camera: str
    name: str
    result: str  # one of exporter.metrics.TRANSCODE_RESULTS
    input_bytes: int
    output_bytes: int
    at: float  # Unix time


def state_folder(base: Path) -> Path:
    return base / STATE_FOLDER


def fsync_folder(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ledger:
    """What happened to each segment; thread-safe, appended durably."""

    def __init__(self, base: Path) -> None:
        self.path = state_folder(base) / LEDGER_NAME
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], list[LedgerEntry]] = {}
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                entry = LedgerEntry(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line cut short by a crash
            self._entries.setdefault((entry.camera, entry.name), []).append(entry)

    def record(self, entry: LedgerEntry) -> None:
        """Append `entry` and fsync it before returning."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            try:
                os.write(fd, (json.dumps(asdict(entry), sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._entries.setdefault((entry.camera, entry.name), []).append(entry)

    def finished(self, camera: str, name: str) -> bool:
        """True when the segment is never to be tried again (done, not worth it, or failed too often)."""
        with self._lock:
            entries = self._entries.get((camera, name), [])
            failures = sum(1 for e in entries if e.result.startswith("failed"))
            return failures >= MAX_FAILURES or any(e.result in FINAL_RESULTS for e in entries)

    def final(self, camera: str, name: str) -> LedgerEntry | None:
        with self._lock:
            return next((e for e in self._entries.get((camera, name), []) if e.result in FINAL_RESULTS), None)

    def size_ratio(self) -> float | None:
        """Bytes after over bytes before, over every segment transcoded; None before the first."""
        done = [e for e in self.entries() if e.result == "transcoded" and e.input_bytes > 0]
        before = sum(e.input_bytes for e in done)
        return sum(e.output_bytes for e in done) / before if before else None

    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return [e for entries in self._entries.values() for e in entries]

    def compact(self, existing: Iterable[tuple[str, str]]) -> None:
        """Rewrite the ledger keeping only segments still on disk (retention deletes the others)."""
        keep = set(existing)
        with self._lock:
            dropped = [key for key in self._entries if key not in keep]
            if not dropped:
                return
            for key in dropped:
                del self._entries[key]
            tmp = self.path.with_name("." + LEDGER_NAME + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                for entries in self._entries.values():
                    for e in entries:
                        fh.write(json.dumps(asdict(e), sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            fsync_folder(self.path.parent)
        log.debug("transcoding ledger: dropped %d segments no longer on disk", len(dropped))

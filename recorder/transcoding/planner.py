"""Which segments are due: completed, older than min_age_days, not in the ledger, oldest first."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.footage.segments import parse_segment_name
from recorder.transcoding.ledger import Ledger

DAY = 86400.0


@dataclass(frozen=True, order=True)
class Candidate:
    """One segment waiting to be transcoded; sorts oldest first."""

    start: float  # Unix time its name encodes
    camera: str
    name: str
    size: int  # bytes
    path: Path


def plan(
    base: Path,
    cameras: Iterable[str],
    ledger: Ledger,
    *,
    now: float,
    min_age_days: float,
    active: Collection[Path] = (),
) -> list[Candidate]:
    """Every due segment of every camera, oldest first; files FFmpeg has open are never due."""
    cutoff = now - min_age_days * DAY
    open_now = {(Path(p).parent.name, Path(p).name) for p in active}  # (camera, name): no syscall per file
    due: list[Candidate] = []
    for camera in cameras:
        folder = base / camera
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue  # no folder yet, or unreadable: storage reports that
        found: list[tuple[str, os.stat_result]] = []
        for entry in entries:
            try:
                if entry.is_file():
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
            except OSError:
                continue  # gone since the listing (retention, a swap): only this file is skipped
        for name, st in found:
            parsed = parse_segment_name(name)
            if parsed is None or parsed.camera != camera or parsed.start > cutoff or st.st_size == 0:
                continue
            if (camera, name) in open_now or ledger.finished(camera, name):
                continue
            due.append(Candidate(parsed.start, camera, name, st.st_size, folder / name))
    due.sort()
    return due

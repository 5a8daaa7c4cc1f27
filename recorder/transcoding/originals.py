"""Originals kept for keep_original_days after a verified transcode, and retention's reclaimer for them.

They live in `<base>/.originals/<camera>/` under their own names: on the recordings filesystem (a rename
moves them), outside every camera folder (the scanner, `--stats` and the metrics never count them), and
they are what retention deletes first, before any footage.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.footage.segments import parse_segment_name

log = logging.getLogger(__name__)

ORIGINALS_FOLDER = ".originals"
DAY = 86400.0


@dataclass(frozen=True)
class KeptOriginal:
    camera: str
    name: str
    path: Path
    size: int
    kept_since: float  # Unix time it was set aside (its mtime is the recording's; ctime is the rename)


def originals_folder(base: Path, camera: str | None = None) -> Path:
    folder = base / ORIGINALS_FOLDER
    return folder / camera if camera else folder


def kept_originals(base: Path) -> list[KeptOriginal]:
    """Every kept original, oldest recording first."""
    found: list[tuple[float, KeptOriginal]] = []
    root = originals_folder(base)
    try:
        cameras = [e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for camera in cameras:
        try:
            with os.scandir(root / camera) as it:
                for entry in it:
                    parsed = parse_segment_name(entry.name)
                    if parsed is None or not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    original = KeptOriginal(camera, entry.name, Path(entry.path), st.st_size, st.st_ctime)
                    found.append((parsed.start, original))
        except OSError:
            continue
    found.sort(key=lambda pair: (pair[0], pair[1].name))
    return [original for _, original in found]


def make_reclaimer(
    base: Path, keep_original_days: Callable[[], float], clock: Callable[[], float] = time.time
) -> Callable[[int], int]:
    """Retention's hook: drop originals past their keep period, then more (oldest first) until `bytes_needed`.

    Called with 0 by the schedule pass (expiry only) and with the bytes the pressure pass must free.
    Returns the bytes freed.
    """

    def reclaim(bytes_needed: int) -> int:
        keep = keep_original_days() * DAY
        now = clock()
        freed = 0
        for original in kept_originals(base):
            expired = now - original.kept_since >= keep
            if not expired and freed >= bytes_needed:
                continue
            try:
                os.unlink(original.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("transcoding: cannot delete kept original %s: %s", original.path, exc)
                continue
            freed += original.size
            why = "kept long enough" if expired else "disk pressure, before any footage"
            log.info("transcoding: deleted kept original %s/%s (%s)", original.camera, original.name, why)
        return freed

    return reclaim

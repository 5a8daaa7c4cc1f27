"""The crash-safe replacement of a segment by its verified transcode, and its recovery at start.

Names inside `<base>/<camera>/` (a leading dot and a suffix: neither retention nor the scanner takes them
for segments, which must match `<camera>_YYYYmmdd_HHMMSS.<ext>`):
- `.<name>.transcoding`: FFmpeg's output, not verified. Worthless after a crash: removed at start.
- `.<name>.verified`: fsynced and verified; the ledger already says "transcoded".

The swap, each step durable (file and folder fsync) before the next:
1. write and fsync `.<name>.transcoding`; verify it;
2. rename it to `.<name>.verified`; record "transcoded" in the ledger;
3. move the original to `<base>/.originals/<camera>/<name>` (or unlink it when keep_original_days is 0);
4. rename `.<name>.verified` to `<name>`.
At every instant the segment's name holds the original, or `.verified` holds a verified replacement (or
both), so a crash anywhere loses nothing; `recover` finishes step 3-4 for every `.verified` it finds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.transcoding.ledger import fsync_folder
from recorder.transcoding.originals import originals_folder

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".transcoding"
VERIFIED_SUFFIX = ".verified"


def temp_path(segment: Path) -> Path:
    return segment.with_name(f".{segment.name}{TEMP_SUFFIX}")


def verified_path(segment: Path) -> Path:
    return segment.with_name(f".{segment.name}{VERIFIED_SUFFIX}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mark_verified(temp: Path, segment: Path) -> Path:
    """Step 2's rename: the fsynced, verified temporary file becomes `.<name>.verified`."""
    verified = verified_path(segment)
    os.replace(temp, verified)
    fsync_folder(segment.parent)
    return verified


def complete_swap(base: Path, segment: Path, *, keep_original: bool) -> None:
    """Steps 3 and 4: the original aside (or gone), the verified replacement under the segment's name.

    Safe to repeat after a crash at any point of it. FileNotFoundError when neither the replacement nor
    the original is left (someone else deleted the segment, e.g. retention by age).
    """
    verified = verified_path(segment)
    camera = segment.parent.name
    if not os.path.lexists(verified):
        # Nothing verified to put in place: whatever holds the name now (original or replacement) stays.
        raise FileNotFoundError(f"no verified replacement for {segment}")
    if os.path.lexists(segment):
        if keep_original:
            aside = originals_folder(base, camera)
            aside.mkdir(parents=True, exist_ok=True)
            os.replace(segment, aside / segment.name)
            fsync_folder(aside)
        else:
            os.unlink(segment)
        fsync_folder(segment.parent)
    os.rename(verified, segment)  # raises FileNotFoundError when the replacement is gone too
    fsync_folder(segment.parent)


@dataclass(frozen=True)
class Recovery:
    removed_temporaries: tuple[Path, ...]
    completed_swaps: tuple[Path, ...]


def recover(base: Path, cameras: Iterable[str], *, keep_original: bool) -> Recovery:
    """At start: remove unverified temporaries, finish every swap a crash interrupted."""
    removed: list[Path] = []
    completed: list[Path] = []
    for camera in cameras:
        folder = base / camera
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
        except OSError:
            continue
        for name in names:
            path = folder / name
            if name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(path)
                    removed.append(path)
                except OSError as exc:
                    log.warning("transcoding: cannot remove leftover %s: %s", path, exc)
            elif name.endswith(VERIFIED_SUFFIX):
                segment = folder / name[1 : -len(VERIFIED_SUFFIX)]
                try:
                    complete_swap(base, segment, keep_original=keep_original)
                    completed.append(segment)
                except OSError as exc:
                    log.error("transcoding: cannot complete the interrupted swap of %s: %s", segment, exc)
        if removed or completed:
            fsync_folder(folder)
    for path in removed:
        log.info("transcoding: removed unverified leftover %s", path)
    for segment in completed:
        log.info("transcoding: completed the interrupted swap of %s", segment)
    return Recovery(tuple(removed), tuple(completed))

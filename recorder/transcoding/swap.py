"""The crash-safe replacement of a segment by its verified transcode, and its recovery at start.

Names inside `<base>/<camera>/` (a leading dot and a suffix: neither retention nor the scanner takes them
for segments, which must match `<camera>_YYYYmmdd_HHMMSS.<ext>`):
- `.<name>.<unique>.transcoding`: FFmpeg's output, not verified. Worthless after a crash: removed at start.
  Unique per job, so two jobs on one segment (never meant to happen: the recordings' lock) cannot share a
  file and one cannot rename the other's half-written output.
- `.<name>.verified`: fsynced and verified. The ledger says "transcoded" once step 2 is done; a crash
  between the rename and the ledger line is repaired by `recover`, which writes the missing line.

The swap, each step durable (file and folder fsync) before the next:
1. write and fsync the temporary file; verify it;
2. rename it to `.<name>.verified`; record "transcoded" in the ledger;
3. keep the original: hard-link it as `<base>/.originals/<camera>/<name>` (where links are not supported:
   move it there); nothing when keep_original_days is 0;
4. rename `.<name>.verified` onto `<name>`, atomically replacing the original.
At every instant the segment's name holds the original, or `.verified` holds a verified replacement (or
both), so a crash anywhere loses nothing; `recover` finishes steps 3-4 for every `.verified` it finds.
When the segment's name is empty and no kept original explains it, retention deleted the segment
meanwhile: the replacement is discarded rather than resurrecting footage retention let go.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.transcoding.ledger import Ledger, LedgerEntry, fsync_folder
from recorder.transcoding.originals import originals_folder

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".transcoding"
VERIFIED_SUFFIX = ".verified"


def temp_path(segment: Path) -> Path:
    """A new, unique temporary name for one job's output (see the module docstring)."""
    return segment.with_name(f".{segment.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


class OriginalVanished(FileNotFoundError):
    """The segment was deleted (by retention) before its swap: the replacement was discarded."""


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
    """Steps 3 and 4: the original kept aside (or dropped), the verified replacement under the segment's name.

    Safe to repeat after a crash at any point of it. FileNotFoundError when nothing verified is left;
    OriginalVanished (after discarding the replacement) when the segment itself is gone and no kept
    original says the swap had begun: retention deleted it, and it stays deleted.
    """
    verified = verified_path(segment)
    camera = segment.parent.name
    if not os.path.lexists(verified):
        # Nothing verified to put in place: whatever holds the name now (original or replacement) stays.
        raise FileNotFoundError(f"no verified replacement for {segment}")
    aside = originals_folder(base, camera) / segment.name
    if not os.path.lexists(segment):
        if not (keep_original and os.path.lexists(aside)):
            os.unlink(verified)
            fsync_folder(segment.parent)
            raise OriginalVanished(f"{segment} was deleted before its swap; its replacement is discarded")
        # A crash after the original moved aside (where links are not supported): only step 4 is left.
    elif keep_original:
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(segment, aside)
        except FileExistsError:
            pass  # linked before a crash
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            os.replace(segment, aside)  # no hard links here (FAT, exFAT): move it, step 4 fills the name
        fsync_folder(aside.parent)
    os.replace(verified, segment)  # the original's name now holds the replacement, never nothing
    fsync_folder(segment.parent)


@dataclass(frozen=True)
class Recovery:
    removed_temporaries: tuple[Path, ...]
    completed_swaps: tuple[Path, ...]
    recorded: tuple[LedgerEntry, ...] = ()  # "transcoded" lines a crash kept from the ledger


def recover(
    base: Path, cameras: Iterable[str], *, keep_original: bool, ledger: Ledger | None = None, now: float = 0.0
) -> Recovery:
    """At start: remove unverified temporaries, finish every swap a crash interrupted.

    With `ledger`, a `.verified` found without its "transcoded" line (a crash between step 2's rename and
    its ledger line) gets the line before its swap completes, so the segment is not transcoded again and
    the measured size ratio counts it.
    """
    removed: list[Path] = []
    completed: list[Path] = []
    recorded: list[LedgerEntry] = []
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
                    if ledger is not None and ledger.final(camera, segment.name) is None:
                        entry = _missing_entry(base, camera, segment, path, keep_original, now)
                        if entry is not None:
                            ledger.record(entry)
                            recorded.append(entry)
                    complete_swap(base, segment, keep_original=keep_original)
                    completed.append(segment)
                except OriginalVanished as exc:
                    log.info("transcoding: %s", exc)
                except OSError as exc:
                    log.error("transcoding: cannot complete the interrupted swap of %s: %s", segment, exc)
        if removed or completed:
            fsync_folder(folder)
    for path in removed:
        log.info("transcoding: removed unverified leftover %s", path)
    for segment in completed:
        log.info("transcoding: completed the interrupted swap of %s", segment)
    return Recovery(tuple(removed), tuple(completed), tuple(recorded))


def _missing_entry(
    base: Path, camera: str, segment: Path, verified: Path, keep_original: bool, now: float
) -> LedgerEntry | None:
    """The "transcoded" line for a swap about to be completed; None when it will not be (original gone)."""
    for original in (segment, originals_folder(base, camera) / segment.name):
        if os.path.lexists(original) and (original == segment or keep_original):
            return LedgerEntry(
                camera, segment.name, "transcoded", original.stat().st_size, verified.stat().st_size, now
            )
    return None

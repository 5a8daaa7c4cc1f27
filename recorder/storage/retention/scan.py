"""Building the index from disk: the first scan, and the resyncs that catch what others changed or deleted."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path

from recorder.storage.retention.filesystem import RecordingsFolder, active_names
from recorder.storage.retention.model import Entry, human_bytes
from recorder.storage.retention.state import StorageState

log = logging.getLogger("recorder.storage")

# Folders of unconfigured cameras named one by one in the log when found; the rest are counted.
LOGGED_ORPHANS = 10


def rescan(
    state: StorageState,
    folder: RecordingsFolder,
    active_paths: Callable[[], Collection[Path]],
    *,
    initial: bool,
) -> None:
    """List every camera folder and replace the index with what is there (under the state's work lock).

    The disk is listed without the state's lock; changes reported meanwhile are replayed on the new index.
    """
    with state.work_lock:
        with state.lock:
            current = state.index.begin_resync()  # pointer copies
        try:
            # No fallback when the callback fails: the exception ends the scan rather than index an open file.
            active = active_names(active_paths())
            # Before listing: a mount that comes or goes during the listing shows as a change at the next check.
            folder_ids = camera_folder_ids(state)
            fresh: dict[str, list[Entry]] = {}
            for cam in state.camera_ids:
                # Known names keep their parsed start (a resync parses only new names) and, unchanged, their
                # very entry, so the new index shares memory with the old. One camera's map at a time.
                known = {e.name: e for e in current.pop(cam, ())}
                fresh[cam] = folder.list_camera(cam, known, active)
                del known
            # Folders of cameras no longer configured (removed, renamed) fill the same disk: indexed so that
            # they age and are reclaimed first, not left to make disk pressure take the cameras' footage.
            for cam in folder.unconfigured_folders():
                known = {e.name: e for e in current.pop(cam, ())}
                entries = folder.list_camera(cam, known, active)
                del known
                if entries:
                    fresh[cam] = entries
        except BaseException:
            with state.lock:
                state.index.abandon_resync()
            raise
        with state.lock:
            had_orphans = set(state.index.orphans)
            before = state.index.finish_resync(fresh)
            state.folder_ids = folder_ids
            state.index.refresh_rates(state.clock())
            state.scanned = True
            state.publish_locked()
            if not initial:
                for cam in state.camera_ids:
                    after = len(state.index.cameras[cam].entries)
                    if before[cam] != after:
                        log.info("camera %s: resync found %d segments, the index had %d", cam, after, before[cam])
            found = [(cam, state.index.cameras[cam]) for cam in state.index.orphans if cam not in had_orphans]
    for cam, ix in found[:LOGGED_ORPHANS]:
        log.warning(
            "camera %s is not in the configuration, yet %s holds %d of its segments (%s): they are aged by "
            "cleanup_days and deleted before any configured camera's footage under disk pressure",
            cam,
            state.base / cam,
            len(ix.entries),
            human_bytes(ix.bytes),
        )
    if len(found) > LOGGED_ORPHANS:
        log.warning("%d more folders of unconfigured cameras found in %s", len(found) - LOGGED_ORPHANS, state.base)
    total = sum(len(ix.entries) for ix in state.index.cameras.values())
    log.debug("%s %s: %d segments", "scanned" if initial else "resynced", state.base, total)


def folder_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a folder, not following a symlink; None when it cannot be stat'ed."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def camera_folder_ids(state: StorageState) -> dict[str, tuple[int, int] | None]:
    return {cam: folder_identity(state.base / cam) for cam in state.camera_ids}


def folders_moved(state: StorageState) -> list[str]:
    """Cameras whose folder is not the one the last scan listed (a mount point unmounted, mounted, replaced).
    A folder missing at the scan and created since (FFmpeg's first segment of a new camera) is taken as it
    is: the index already follows what FFmpeg writes into it."""
    moved = []
    now = camera_folder_ids(state)
    with state.lock:
        for cam, identity in now.items():
            known = state.folder_ids.get(cam, identity)
            if known is None and identity is not None:
                state.folder_ids[cam] = identity
            elif known != identity:
                moved.append(cam)
    return moved

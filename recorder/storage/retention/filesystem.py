"""The recordings folder on disk: statvfs, the write probe, listing and deleting, never through a symlink.

Everything here goes through a camera folder's directory file descriptor opened with O_NOFOLLOW, so a
camera folder swapped for a symlink is refused instead of walked or cleaned.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from recorder.footage.segments import parse_segment_name, segment_file_name
from recorder.footage.write_probe import is_resource_error, probe_folder
from recorder.storage.retention.model import DeletedFile, DiskUsage, Entry

# One logger for the whole storage side, the name operators already filter on.
log = logging.getLogger("recorder.storage")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def statvfs_usage(path: Path) -> DiskUsage:
    """Read the usage of the filesystem holding `path` with os.statvfs."""
    st = os.statvfs(path)
    return DiskUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, st.f_frsize or 4096)


def could_be_camera_folder(name: str) -> bool:
    """True when segments named for a camera `name` would parse back to it: only such a folder can hold the
    recorder's footage (lost+found, dot-folders such as .transcoding, or `my clips` never can)."""
    parsed = parse_segment_name(segment_file_name(name, 0.0)) if name else None
    return parsed is not None and parsed.camera == name


def active_names(paths: Iterable[Path]) -> set[tuple[str, str]]:
    """(folder name, file name) of every file FFmpeg writes; matched loosely so more is spared, never less."""
    return {(Path(p).parent.name, Path(p).name) for p in paths}


class Deletion:
    """What unlinking a pass's victims came to."""

    def __init__(self) -> None:
        self.done: list[DeletedFile] = []  # in the order picked, size as found on disk
        self.gone: list[DeletedFile] = []  # vanished or no longer a regular file: dropped, not counted
        self.failed: list[tuple[str, str, str]] = []  # (camera, name, error)


class RecordingsFolder:
    """<base>/<camera>/ on disk: what may be listed, probed and deleted there."""

    def __init__(self, base: Path, camera_ids: tuple[str, ...]) -> None:
        self.base = base
        self._camera_ids = camera_ids
        self._configured = frozenset(camera_ids)
        self._warned_folders: set[str] = set()  # camera folders already reported as unusable
        self._told_symlinks: set[str] = set()  # symlinks under base named like a camera, already logged

    def unconfigured_folders(self) -> list[str]:
        """Names of the real folders (not symlinks) under base that could be a camera's but are not configured.

        Candidates only: a folder is a camera's footage once list_camera finds segment names of that very
        camera in it (the folder `old` holds `old_YYYYmmdd_HHMMSS.mkv`); anything else is never touched.
        """
        names: list[str] = []
        try:
            with os.scandir(self.base) as it:
                for de in it:
                    name = de.name
                    if name in self._configured or not could_be_camera_folder(name):
                        continue
                    if de.is_symlink():
                        if name not in self._told_symlinks:
                            self._told_symlinks.add(name)
                            log.info("%s is a symlink, not a camera folder: never indexed nor cleaned", de.path)
                        continue
                    if de.is_dir(follow_symlinks=False):
                        names.append(name)
        except FileNotFoundError:
            return []  # before the first recording
        except OSError as exc:
            log.warning("cannot list %s for folders of unconfigured cameras: %s", self.base, exc)
            return []
        names.sort()
        return names

    def folder_ok(self, cam: str) -> bool:
        """True when <base>/<camera> is a real folder (not a symlink) or does not exist yet."""
        folder = self.base / cam
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            return True
        except OSError as exc:
            log.warning("camera %s: cannot examine %s: %s", cam, folder, exc)
            return False
        if stat.S_ISDIR(st.st_mode):
            self._warned_folders.discard(cam)
            return True
        if cam not in self._warned_folders:
            self._warned_folders.add(cam)
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
            log.warning("camera %s: %s is %s; it is neither accounted nor cleaned", cam, folder, what)
        return False

    def open_camera_folder(self, cam: str) -> int:
        """Open <base>/<camera> without following a symlink at the last step, so everything stays inside it."""
        # The base may itself be a symlink: that is the operator's configuration, unlike a camera folder.
        base_fd = os.open(self.base, _DIR_FLAGS)
        try:
            return os.open(cam, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=base_fd)
        finally:
            os.close(base_fd)

    def list_camera(self, cam: str, known: Mapping[str, Entry], active: Collection[tuple[str, str]]) -> list[Entry]:
        """List one camera folder: regular files named as this camera's segments, oldest first.

        Known names keep their parsed start and, unchanged, their very entry (so a new index shares memory
        with the old); files FFmpeg still writes are left for when it reports them complete.
        """
        if not self.folder_ok(cam):
            return []
        entries: list[Entry] = []
        prefix = cam + "_"  # a cheap test before the full parse: other names are skipped at once
        try:
            # Listed through a folder fd opened with O_NOFOLLOW: a folder swapped for a symlink after the check
            # above fails here (ELOOP) instead of being walked.
            dir_fd = self.open_camera_folder(cam)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("camera %s: cannot list %s: %s", cam, self.base / cam, exc)
            return []
        try:
            with os.scandir(dir_fd) as it:
                for de in it:
                    name = de.name
                    if (cam, name) in active or not de.is_file(follow_symlinks=False):
                        continue  # FFmpeg still writes it: accounted when it completes
                    old = known.get(name)
                    if old is None and not name.startswith(prefix):
                        continue
                    if old is not None:
                        start, duration = old.start, old.duration
                    else:
                        parsed = parse_segment_name(name)
                        if parsed is None or parsed.camera != cam:
                            continue
                        start, duration = parsed.start, 0.0
                    try:
                        size = de.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue
                    if size == 0:
                        # Left by an FFmpeg that died before its header (a start into a full disk): no
                        # recording, so never counted as one. The supervisor that made it removes its own.
                        continue
                    if old is not None and old.size == size:
                        entries.append(old)
                    else:
                        entries.append(Entry(start, name, size, duration))
        except OSError as exc:
            log.warning("camera %s: cannot list %s: %s", cam, self.base / cam, exc)
            return []
        finally:
            os.close(dir_fd)
        entries.sort()
        return entries

    def probe(self, previous: bool | None) -> bool:
        """A real write into the recordings folder and into every existing camera folder: all must work.

        The camera folders count too: a read-only bind mount or wrong owner on one of them stops that camera
        as surely as on the base. `previous` is kept when the probe cannot run for want of resources.
        """
        folders = [self.base]
        for cam in self._camera_ids:
            try:
                st = os.lstat(self.base / cam)
            except FileNotFoundError:
                continue  # created at the camera's first start
            except OSError as exc:
                log.debug("write probe: cannot examine %s: %s", self.base / cam, exc)
                return False
            if not stat.S_ISDIR(st.st_mode):
                return False  # a symlink or a file where the camera folder belongs: refused, as the camera does
            folders.append(self.base / cam)
        for folder in folders:
            error = probe_folder(folder)
            if error is not None and is_resource_error(error):
                # Out of descriptors or memory says nothing about the folder: keep what we knew.
                log.debug("write probe in %s could not run: %s", folder, error)
                return previous if previous is not None else True
            if error is not None:
                log.debug("write probe in %s failed: %s", folder, error)
                return False
        return True

    def delete(self, victims: Iterable[DeletedFile], active: Collection[tuple[str, str]]) -> Deletion:
        """Unlink the victims that are still regular files and not open in FFmpeg (`active`)."""
        result = Deletion()
        folders: dict[str, int | None] = {}  # camera -> open folder fd, None when it may not be entered
        folder_errors: dict[str, str] = {}  # camera -> why its folder could not be opened
        try:
            for f in victims:
                cam = f.camera
                if cam not in folders:
                    try:
                        folders[cam] = self.open_camera_folder(cam)
                    except OSError as exc:
                        log.warning("camera %s: not deleting in %s: %s", cam, self.base / cam, exc)
                        folders[cam] = None
                        folder_errors[cam] = exc.strerror or str(exc)
                dir_fd = folders[cam]
                if dir_fd is None:
                    result.failed.append((cam, f.name, f"camera folder: {folder_errors[cam]}"))
                    continue
                if (cam, f.name) in active:
                    continue
                try:
                    st = os.lstat(f.name, dir_fd=dir_fd)
                    if not stat.S_ISREG(st.st_mode):
                        result.gone.append(f)  # a symlink or something else took its place: never touched
                        continue
                    os.unlink(f.name, dir_fd=dir_fd)
                except FileNotFoundError:
                    result.gone.append(f)
                    continue
                except OSError as exc:
                    result.failed.append((cam, f.name, exc.strerror or str(exc)))
                    continue
                result.done.append(f._replace(size=st.st_size))
                log.debug("camera %s: deleted %s (%s, %d bytes)", cam, f.name, f.reason, st.st_size)
        finally:
            for dir_fd in folders.values():
                if dir_fd is not None:
                    os.close(dir_fd)
        return result

"""Builds each camera's supervisor, wired to the recorder: its FFmpeg command, where its device is, and the
storage accounting its segments go to (looked up at each use: a reload may replace any of them)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyudev

from recorder.camera.supervisor import CameraSupervisor, CommandFactory
from recorder.config import CameraConfig
from recorder.devices.identity import resolve_device
from recorder.ffmpeg.presets import build_command
from recorder.ffmpeg.process import Launcher

if TYPE_CHECKING:
    from recorder.daemon.recorder import Recorder


class SupervisorFactory:
    """One CameraSupervisor per camera, built from the recorder's configuration and tools of the moment."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        launcher: Launcher,
        clock: Callable[[], float],
        udev_context: pyudev.Context | None,
    ) -> None:
        self._recorder = recorder
        self._launcher = launcher
        self._clock = clock
        self._udev_context = udev_context

    def build(self, camera: CameraConfig) -> CameraSupervisor:
        """The camera's supervisor, going on from the counters its earlier supervisors left in the ledger."""
        rec = self._recorder
        return CameraSupervisor(
            camera,
            self.command_factory(camera),
            rec.config.supervisor,
            segment_time=rec.config.recording.segment_time,
            ffprobe=rec.tools.ffprobe or "ffprobe",
            # Looked up at each segment: a reload may replace the storage accounting.
            on_segment=lambda segment: rec.storage.add_segment(segment),
            on_write_result=lambda error: rec.storage.note_write_result(camera.id, error),
            free_space=self._free_space_after_enospc,
            on_discard=lambda path: rec.storage.forget(path),
            device_node=self._device_node_finder(camera),
            launcher=self._launcher,
            clock=self._clock,
            carried=rec.ledger.carried(camera.id),
        )

    def command_factory(self, camera: CameraConfig) -> CommandFactory:
        """How `camera`'s FFmpeg command is built for the node found (with the recorder's config of the moment)."""
        rec = self._recorder
        ffmpeg = rec.tools.ffmpeg
        if ffmpeg is None:  # the Recorder refuses to start without one; a reload keeps the previous
            raise RuntimeError("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config")
        return lambda node, suffix=0: build_command(camera, rec.config, ffmpeg, device_node=node, name_suffix=suffix)

    def _device_node_finder(self, camera: CameraConfig) -> Callable[[], str | None]:
        if camera.match is None and camera.location:
            # A configured path (often a by-id link) is handed to FFmpeg as written.
            return lambda: camera.location if os.path.exists(camera.location) else None
        # Found by identity: the monitor knows the node from udev; a fresh look covers polling mode.
        rec, context = self._recorder, self._udev_context
        return lambda: rec.hotplug.device_node(camera.id) or resolve_device(camera, context=context)

    def _free_space_after_enospc(self) -> bool:
        """A supervisor's writer met ENOSPC: run a pressure pass; True when it made room.

        Room is footage deleted, or free space that grew: a pass may free space by deleting kept transcode
        originals only (the reclaimers), which lists no file yet leaves the writer room to go on.
        """
        storage = self._recorder.storage
        base = storage.base_directory
        before = _available_bytes(base)
        report = storage.free_space_now()
        if report is None:
            return False
        if report.file_count:
            return True
        after = _available_bytes(base)
        return before is not None and after is not None and after > before


def _available_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on folder's filesystem, or None when statvfs fails."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize

"""How each camera is wired into the daemon: its supervisor (its FFmpeg command, where its device is, the
storage accounting its segments go to) and the hot-plug monitor whose add/remove reach that supervisor. What
they are built from is looked up at each use: a reload may replace the config, the storage or the monitor."""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import pyudev

from recorder.camera.ledger import CameraLedger
from recorder.camera.supervisor import CameraSupervisor, CommandFactory
from recorder.config import CameraConfig, Config, SourceKind
from recorder.devices.hotplug import HotplugMonitor
from recorder.devices.identity import resolve_device
from recorder.ffmpeg.binary import FFmpegTools
from recorder.ffmpeg.presets import build_command
from recorder.ffmpeg.process import Launcher
from recorder.storage.facade import Storage

# Hot-plug lines are the daemon's: operators grep for recorder.daemon.
log = logging.getLogger("recorder.daemon")


class WiringSource(Protocol):
    """What a supervisor is built from, read at each use (the Recorder; a reload replaces any of these)."""

    @property
    def config(self) -> Config: ...
    @property
    def tools(self) -> FFmpegTools: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def ledger(self) -> CameraLedger: ...
    @property
    def hotplug(self) -> HotplugMonitor: ...


class SupervisorFactory:
    """One CameraSupervisor per camera, built from the recorder's configuration and tools of the moment."""

    def __init__(
        self,
        source: WiringSource,
        *,
        launcher: Launcher,
        clock: Callable[[], float],
        udev_context: pyudev.Context | None,
    ) -> None:
        self._source = source
        self._launcher = launcher
        self._clock = clock
        self._udev_context = udev_context

    def build(self, camera: CameraConfig) -> CameraSupervisor:
        """The camera's supervisor, going on from the counters its earlier supervisors left in the ledger."""
        src = self._source
        return CameraSupervisor(
            camera,
            self.command_factory(camera),
            src.config.supervisor,
            segment_time=src.config.recording.segment_time,
            ffprobe=src.tools.ffprobe or "ffprobe",
            # Looked up at each segment: a reload may replace the storage accounting.
            on_segment=lambda segment: src.storage.add_segment(segment),
            on_write_result=lambda error: src.storage.note_write_result(camera.id, error),
            free_space=self._free_space_after_enospc,
            on_discard=lambda path: src.storage.forget(path),
            device_node=self._device_node_finder(camera),
            launcher=self._launcher,
            clock=self._clock,
            carried=src.ledger.carried(camera.id),
        )

    def command_factory(self, camera: CameraConfig) -> CommandFactory:
        """How `camera`'s FFmpeg command is built for the node found (with the config of the moment)."""
        src = self._source
        ffmpeg = src.tools.ffmpeg
        if ffmpeg is None:  # the Recorder refuses to start without one; a reload keeps the previous
            raise RuntimeError("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config")
        return lambda node, suffix=0: build_command(camera, src.config, ffmpeg, device_node=node, name_suffix=suffix)

    def _device_node_finder(self, camera: CameraConfig) -> Callable[[], str | None]:
        if camera.match is None and camera.location:
            # A configured path (often a by-id link) is handed to FFmpeg as written.
            return lambda: camera.location if os.path.exists(camera.location) else None
        # Found by identity: the monitor knows the node from udev; a fresh look covers polling mode.
        src, context = self._source, self._udev_context
        return lambda: src.hotplug.device_node(camera.id) or resolve_device(camera, context=context)

    def _free_space_after_enospc(self) -> bool:
        """A supervisor's writer met ENOSPC: run a pressure pass; True when it made room.

        Room is footage deleted, or free space that grew: a pass may free space by deleting kept transcode
        originals only (the reclaimers), which lists no file yet leaves the writer room to go on.
        """
        storage = self._source.storage
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


def udev_context() -> pyudev.Context | None:
    """The daemon's one pyudev context (shared by the monitor and the supervisors' device lookups)."""
    try:
        return pyudev.Context()
    except (ImportError, OSError) as exc:
        log.info("no udev database (%s): cameras found by match need their by-id links", exc)
        return None


def device_cameras(config: Config) -> list[CameraConfig]:
    """The enabled cameras the hot-plug monitor watches for: USB/V4L2 devices."""
    return [c for c in config.enabled_cameras if c.source is SourceKind.DEVICE]


class DeviceEvents:
    """Builds the hot-plug monitor for a configuration and hands each camera's coming and going to its
    supervisor (looked up at each event: a reload replaces the supervisors)."""

    def __init__(
        self, supervisors: Callable[[], Mapping[str, CameraSupervisor]], context: pyudev.Context | None
    ) -> None:
        self._supervisors = supervisors
        self.context = context
        # (udev action, whether it concerned a configured camera) -> events seen; kept across reloads.
        self.events: collections.Counter[tuple[str, bool]] = collections.Counter()

    def new_monitor(self, config: Config) -> HotplugMonitor:
        return HotplugMonitor(
            device_cameras(config),
            on_add=self._device_added,
            on_remove=self._device_removed,
            on_event=self._count,
            use_udev=config.system.udev,
            poll_interval=config.supervisor.presence_check_interval,
            context=self.context,  # one pyudev context for the daemon, not one per user
        )

    def _device_added(self, camera_id: str, node: str) -> None:
        log.info("camera %s appeared at %s", camera_id, node)
        supervisor = self._supervisors().get(camera_id)
        if supervisor is not None:
            supervisor.device_added()

    def _device_removed(self, camera_id: str, node: str) -> None:
        log.warning("camera %s was unplugged (%s)", camera_id, node)
        supervisor = self._supervisors().get(camera_id)
        if supervisor is not None:
            supervisor.device_removed()

    def _count(self, action: str, matched: bool) -> None:
        self.events[(action, matched)] += 1

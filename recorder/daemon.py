"""The recorder: one supervisor per camera, storage and retention, hot-plug, and systemd's view of it."""

from __future__ import annotations

import collections
import gc
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import psutil
import pyudev

from recorder import __version__
from recorder.config import CameraConfig, Config, SourceKind
from recorder.ffmpeg_binary import FFmpegTools, ffmpeg_version
from recorder.ffmpeg_process import Launcher, spawn_ffmpeg
from recorder.hotplug import HotplugMonitor, resolve_device
from recorder.presets import build_command
from recorder.sdnotify import Notifier
from recorder.states import CameraSnapshot, CameraState
from recorder.storage import Storage, StorageSnapshot
from recorder.supervisor import CameraSupervisor, CommandFactory, ResourceUsage

log = logging.getLogger(__name__)

# Every wake-up of an idle daemon costs CPU that counts against FFmpeg's (cheap) stream copy, so the
# housekeeping loop ticks slowly; what must be prompt arrives by callback (retention's pause) or by
# signal (stop), and the watchdog shortens the tick when WatchdogSec asks for more.
HOUSEKEEPING_TICK = 5.0
TEMPERATURE_EVERY = 15.0
# A supervisor whose loop has not gone round for this long is wedged (its loop beats every 5 s; a check
# of a cut-off segment may take 20 s): the watchdog pings stop and systemd restarts the daemon.
HEARTBEAT_STALE_AFTER = 60.0


@dataclass(frozen=True)
class CameraView:
    """Everything the exporter shows of one camera."""

    config: CameraConfig
    status: CameraSnapshot
    resources: ResourceUsage


@dataclass(frozen=True)
class RecorderSnapshot:
    """The whole recorder at one moment, assembled from published snapshots without locks."""

    version: str
    ffmpeg_version: str
    python_version: str
    started_at: float  # Unix time
    cameras: tuple[CameraView, ...]
    storage: StorageSnapshot
    hotplug_events: Mapping[tuple[str, bool], int]
    hotplug_mode: str
    cpu_temperature_celsius: float | None
    monotonic_now: float = field(default_factory=time.monotonic)

    @property
    def ready(self) -> bool:
        return all(view.status.state is CameraState.RECORDING for view in self.cameras)


def hottest_cpu_sensor() -> float | None:
    """The hottest CPU temperature psutil can read, or None on hosts without sensors."""
    try:
        sensors = psutil.sensors_temperatures()
    except (AttributeError, OSError):
        return None
    preferred = [
        s for name, entries in sensors.items() if name in ("coretemp", "k10temp", "cpu_thermal") for s in entries
    ]
    readings = preferred or [s for entries in sensors.values() for s in entries]
    values = [s.current for s in readings if s.current is not None and s.current > -50]
    return max(values) if values else None


def _udev_context() -> pyudev.Context | None:
    try:
        return pyudev.Context()
    except (ImportError, OSError) as exc:
        log.info("no udev database (%s): cameras found by match need their by-id links", exc)
        return None


class Recorder:
    """Owns every camera's supervisor, the storage accounting and the hot-plug monitor."""

    def __init__(
        self,
        config: Config,
        tools: FFmpegTools,
        *,
        launcher: Launcher = spawn_ffmpeg,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        heartbeat_stale_after: float = HEARTBEAT_STALE_AFTER,
    ) -> None:
        if tools.ffmpeg is None:
            raise RuntimeError("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config")
        self.config = config
        self.tools = tools
        self._clock = clock
        self._heartbeat_stale_after = heartbeat_stale_after
        self._notifier = notifier or Notifier()
        self._started_at = clock()
        self._ffmpeg_version = ffmpeg_version(tools.ffmpeg)
        self._stop = threading.Event()
        self._hotplug_events: collections.Counter[tuple[str, bool]] = collections.Counter()
        self._temperature: float | None = None
        self._udev_context = _udev_context()
        self.storage = Storage(
            config, clock=clock, active_paths=self.active_segments, on_recording_allowed=self._recording_allowed
        )
        device_cameras = [c for c in config.enabled_cameras if c.source is SourceKind.DEVICE]
        self.hotplug = HotplugMonitor(
            device_cameras,
            on_add=self._device_added,
            on_remove=self._device_removed,
            on_event=self._count_hotplug,
            use_udev=config.system.udev,
            poll_interval=config.supervisor.presence_check_interval,
        )
        self.supervisors: dict[str, CameraSupervisor] = {}
        for camera in config.enabled_cameras:
            self.supervisors[camera.id] = CameraSupervisor(
                camera,
                self._command_factory(camera),
                config.supervisor,
                segment_time=config.recording.segment_time,
                ffprobe=tools.ffprobe or "ffprobe",
                on_segment=self.storage.add_segment,
                on_write_result=lambda error, cid=camera.id: self.storage.note_write_result(cid, error),
                free_space=lambda: bool((report := self.storage.free_space_now()) and report.file_count),
                on_discard=self.storage.forget,
                device_node=self._device_node_finder(camera),
                launcher=launcher,
                clock=clock,
            )

    def _command_factory(self, camera: CameraConfig) -> CommandFactory:
        ffmpeg = self.tools.ffmpeg
        assert ffmpeg is not None
        return lambda node: build_command(camera, self.config, ffmpeg, device_node=node)

    def _device_node_finder(self, camera: CameraConfig) -> Callable[[], str | None]:
        if camera.match is None and camera.location:
            # A configured path (often a by-id link) is handed to FFmpeg as written.
            return lambda: camera.location if os.path.exists(camera.location) else None
        # Found by identity: the monitor knows the node from udev; a fresh look covers polling mode.
        return lambda: self.hotplug.device_node(camera.id) or resolve_device(camera, context=self._udev_context)

    # -- hot-plug -------------------------------------------------------------------------------

    def _device_added(self, camera_id: str, node: str) -> None:
        log.info("camera %s appeared at %s", camera_id, node)
        supervisor = self.supervisors.get(camera_id)
        if supervisor is not None:
            supervisor.device_added()

    def _device_removed(self, camera_id: str, node: str) -> None:
        log.warning("camera %s was unplugged (%s)", camera_id, node)
        supervisor = self.supervisors.get(camera_id)
        if supervisor is not None:
            supervisor.device_removed()

    def _recording_allowed(self, allowed: bool) -> None:
        """Retention's stop_recording policy: pause every camera while the disk is above the threshold."""
        if not allowed:
            log.error("disk usage above storage.disk_usage_threshold: recording paused (on_threshold: stop_recording)")
        else:
            log.warning("disk usage back under the threshold: recording resumes")
        for supervisor in self.supervisors.values():
            supervisor.pause(not allowed)

    def _count_hotplug(self, action: str, matched: bool) -> None:
        self._hotplug_events[(action, matched)] += 1

    # -- what others read -----------------------------------------------------------------------

    def active_segments(self) -> list[Path]:
        return [path for sup in self.supervisors.values() for path in sup.active_segments()]

    def snapshot(self) -> RecorderSnapshot:
        return RecorderSnapshot(
            version=__version__,
            ffmpeg_version=self._ffmpeg_version,
            python_version=platform.python_version(),
            started_at=self._started_at,
            cameras=tuple(CameraView(sup.camera, sup.snapshot, sup.resources) for sup in self.supervisors.values()),
            storage=self.storage.snapshot(),
            hotplug_events=MappingProxyType(dict(self._hotplug_events)),
            hotplug_mode=self.hotplug.mode,
            cpu_temperature_celsius=self._temperature,
        )

    def status_line(self) -> str:
        """One line for systemd's STATUS=: each camera's state."""
        parts = [f"{sup.camera.id}: {sup.snapshot.state.value}" for sup in self.supervisors.values()]
        return ", ".join(parts) or "no cameras enabled"

    # -- lifecycle ------------------------------------------------------------------------------

    def index_recordings(self) -> None:
        """The first scan of the recordings folder, kept out of the garbage collector's way."""
        self.storage.scan()
        # The index lives as long as the daemon (hundreds of thousands of entries on a big disk): frozen,
        # the collector's full passes skip it, which keeps their pauses, and scrape latency, short.
        gc.freeze()

    def start(self) -> None:
        for warning in self.config.warnings:
            log.warning("config: %s", warning)
        self.config.recording.base_directory.mkdir(parents=True, exist_ok=True)
        self.index_recordings()
        self.storage.start()
        self.hotplug.start()
        log.info("hot-plug detection: %s", self.hotplug.mode)
        allowed = self.storage.recording_allowed()
        for supervisor in self.supervisors.values():
            supervisor.pause(not allowed)
            supervisor.start()
        self._temperature = hottest_cpu_sensor()
        self._notifier.ready(self.status_line())

    def request_stop(self) -> None:
        self._stop.set()

    def run(self, duration: float | None = None) -> None:
        """Housekeeping until stopped: systemd watchdog and status, retention's pause, temperature."""
        deadline = None if duration is None else time.monotonic() + duration
        next_temperature = time.monotonic() + TEMPERATURE_EVERY
        next_watchdog = time.monotonic()
        last_status = ""
        watchdog = self._notifier.watchdog_interval
        tick = min(HOUSEKEEPING_TICK, watchdog) if watchdog is not None else HOUSEKEEPING_TICK
        while not self._stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if self._notifier.watchdog_interval is not None and now >= next_watchdog and self._healthy():
                self._notifier.watchdog()
                next_watchdog = now + self._notifier.watchdog_interval
            status = self.status_line()
            if status != last_status:
                self._notifier.status(status)
                last_status = status
            if now >= next_temperature:
                self._temperature = hottest_cpu_sensor()
                next_temperature = now + TEMPERATURE_EVERY
            self._stop.wait(tick if deadline is None else min(tick, deadline - now))

    def _healthy(self) -> bool:
        """The watchdog is fed only while every supervision loop goes round and the storage loop lives."""
        stale = self._heartbeat_stale_after
        return all(sup.healthy(stale) for sup in self.supervisors.values()) and self.storage.alive

    def stop(self) -> bool:
        """Stop every FFmpeg so that it finalizes its segment; True if all ended in time."""
        self._notifier.stopping()
        timeout = self.config.supervisor.stop_timeout
        threads = [
            threading.Thread(target=sup.stop, args=(timeout + 3,), name=f"stop-{cid}")
            for cid, sup in self.supervisors.items()
        ]
        # In parallel: each FFmpeg takes its own time to finalize.
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ok = all(not sup.alive for sup in self.supervisors.values())
        self.hotplug.stop()
        self.storage.stop()
        self._notifier.close()
        return ok

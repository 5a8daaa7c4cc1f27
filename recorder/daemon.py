"""The recorder: one supervisor per camera, storage and retention, hot-plug, and systemd's view of it."""

from __future__ import annotations

import collections
import gc
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import psutil
import pyudev

from recorder import __version__
from recorder.config import CameraConfig, Config
from recorder.ffmpeg_binary import FFmpegTools, FFmpegVersion
from recorder.ffmpeg_process import Launcher, spawn_ffmpeg
from recorder.hotplug import HotplugMonitor, resolve_device
from recorder.presets import build_command, encoder_preset
from recorder.reload import ConfigReloader, device_cameras
from recorder.sdnotify import Notifier
from recorder.snapshots import CameraView, RecorderSnapshot
from recorder.storage import Storage
from recorder.supervisor import CameraSupervisor, CommandFactory
from recorder.transcoding import service as transcoding
from recorder.transcoding.worker import TranscodeWorker

log = logging.getLogger(__name__)

# Every wake-up of an idle daemon costs CPU that counts against FFmpeg's (cheap) stream copy, so the
# housekeeping loop ticks slowly; what must be prompt arrives by callback (retention's pause) or by
# signal (stop), and the watchdog shortens the tick when WatchdogSec asks for more.
HOUSEKEEPING_TICK = 5.0
TEMPERATURE_EVERY = 15.0
# A supervisor whose loop has not gone round for this long is wedged (its loop beats every 5 s; a check
# of a cut-off segment may take 20 s): the watchdog pings stop and systemd restarts the daemon.
HEARTBEAT_STALE_AFTER = 60.0


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
        config_loader: Callable[[], Config] | None = None,
        ffmpeg_version: Callable[[str], FFmpegVersion] = FFmpegVersion,
    ) -> None:
        if tools.ffmpeg is None:
            raise RuntimeError("no FFmpeg found: install ffmpeg or set system.ffmpeg in the config")
        self.config = config
        self.tools = tools
        self._clock = clock
        self._heartbeat_stale_after = heartbeat_stale_after
        self._notifier = notifier or Notifier()
        self._launcher = launcher
        self._started_at = clock()
        # Probed in the background: a hung binary must not hold up the start (nor a reload).
        self._new_version_probe = ffmpeg_version
        self._ffmpeg_version = ffmpeg_version(tools.ffmpeg)
        self._config_loader = config_loader
        # SIGHUP's work, in recorder/reload.py.
        self._reloader = ConfigReloader(self, housekeeping_tick=HOUSEKEEPING_TICK)
        self._reload_successful = True
        self._reload_success_at = self._started_at
        self._supervisors_started = False
        self._retiring: set[int] = set()  # ids of supervisors a reload is stopping
        self._stop = threading.Event()
        # Signal handlers only set these flags and the wake-up; the housekeeping loop does the work.
        self._reload_requested = threading.Event()
        self._status_requested = threading.Event()
        self._wakeup = threading.Event()
        self._hotplug_events: collections.Counter[tuple[str, bool]] = collections.Counter()
        self._temperature: float | None = None
        self._udev_context = _udev_context()
        # Threads beyond the supervisors and storage whose death makes the daemon unhealthy: name -> alive().
        self._liveness_checks: dict[str, Callable[[], bool]] = {}
        self._storage_swapping = False  # a reload stops one storage worker and starts the next
        self._hotplug_swapping = False  # a reload stops one monitor and starts the next: not dead meanwhile
        self._next_watchdog = 0.0  # monotonic time the watchdog is due; also fed during a slow reload
        self.transcoder: TranscodeWorker | None = None  # night transcoding, started by start() when enabled
        # Others keep this object (the webhook's retention requests): a reload that rebuilds the accounting
        # swaps what it forwards to, so they follow without knowing.
        self._storage = _CurrentStorage(self._new_storage(config))
        self.storage = cast(Storage, self._storage)
        self.hotplug = self._new_hotplug(config)
        self.supervisors: dict[str, CameraSupervisor] = {}
        for camera in config.enabled_cameras:
            self.supervisors[camera.id] = self._new_supervisor(camera)
        # Read through self at each check: a reload may replace the monitor or the worker.
        self.add_liveness_check("hotplug", lambda: self._hotplug_swapping or self.hotplug.running)
        self.add_liveness_check("transcoding", self._transcoder_alive)

    def add_liveness_check(self, name: str, alive: Callable[[], bool]) -> None:
        """Count `name` as stuck (in /-/healthy and for the systemd watchdog) whenever `alive()` is false.

        For threads the composition root owns beside the cameras (the exporter's I/O thread, ...); a check that
        raises counts as dead. Checked only once start() has started the supervisors.
        """
        self._liveness_checks[name] = alive

    def _new_storage(self, config: Config) -> Storage:
        return Storage(
            config,
            clock=self._clock,
            active_paths=self._protected_paths,
            on_recording_allowed=self._recording_allowed,
            **transcoding.storage_hooks(config, self._transcoded_size_ratio),
        )

    def _new_hotplug(self, config: Config) -> HotplugMonitor:
        return HotplugMonitor(
            device_cameras(config),
            on_add=self._device_added,
            on_remove=self._device_removed,
            on_event=self._count_hotplug,
            use_udev=config.system.udev,
            poll_interval=config.supervisor.presence_check_interval,
            context=self._udev_context,  # one pyudev context for the daemon, not one per user
        )

    def _new_supervisor(self, camera: CameraConfig) -> CameraSupervisor:
        config = self.config
        return CameraSupervisor(
            camera,
            self._command_factory(camera),
            config.supervisor,
            segment_time=config.recording.segment_time,
            ffprobe=self.tools.ffprobe or "ffprobe",
            # Looked up at each segment: a reload may replace the storage accounting.
            on_segment=lambda segment: self.storage.add_segment(segment),
            on_write_result=lambda error: self.storage.note_write_result(camera.id, error),
            free_space=self._free_space_after_enospc,
            on_discard=lambda path: self.storage.forget(path),
            device_node=self._device_node_finder(camera),
            launcher=self._launcher,
            clock=self._clock,
        )

    def _free_space_after_enospc(self) -> bool:
        """A supervisor's writer met ENOSPC: run a pressure pass; True when it made room.

        Room is footage deleted, or free space that grew: a pass may free space by deleting kept transcode
        originals only (the reclaimers), which lists no file yet leaves the writer room to go on.
        """
        base = self.storage.base_directory
        before = _available_bytes(base)
        report = self.storage.free_space_now()
        if report is None:
            return False
        if report.file_count:
            return True
        after = _available_bytes(base)
        return before is not None and after is not None and after > before

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
        """Retention's stop_recording policy: pause every camera while the disk is above the threshold.

        The flip itself is logged once, by the storage that decided it.
        """
        for supervisor in self.supervisors.values():
            supervisor.pause(not allowed)

    def _count_hotplug(self, action: str, matched: bool) -> None:
        self._hotplug_events[(action, matched)] += 1

    # -- what others read -----------------------------------------------------------------------

    def active_segments(self) -> list[Path]:
        return [path for sup in self.supervisors.values() for path in sup.active_segments()]

    def _protected_paths(self) -> list[Path]:
        """What retention must not delete: every segment FFmpeg writes, and the one the night transcoder reads."""
        paths = self.active_segments()
        worker = self.transcoder
        if worker is not None:
            # busy_paths() arrives with the transcoding worker's own change; until then nothing extra is held.
            busy: Callable[[], list[Path]] = getattr(worker, "busy_paths", list)
            paths.extend(busy())
        return paths

    def snapshot(self) -> RecorderSnapshot:
        config = self.config
        return RecorderSnapshot(
            version=__version__,
            ffmpeg_version=self._ffmpeg_version.value,
            python_version=platform.python_version(),
            started_at=self._started_at,
            cameras=tuple(
                CameraView(sup.camera, sup.snapshot, sup.resources, encoder_preset(sup.camera, config)[0].value)
                for sup in self.supervisors.values()
            ),
            storage=self.storage.snapshot(),
            hotplug_events=MappingProxyType(dict(self._hotplug_events)),
            hotplug_mode=self.hotplug.mode,
            cpu_temperature_celsius=self._temperature,
            stuck=self.stuck(),
            config_reload_successful=self._reload_successful,
            config_reload_success_at=self._reload_success_at,
            segment_time=config.recording.segment_time,
            stall_timeout=config.supervisor.stall_timeout,
            transcoding=self.transcoder.snapshot() if self.transcoder is not None else None,
        )

    def stuck(self) -> tuple[str, ...]:
        """Cameras whose supervision loop has not gone round lately, and "storage" if its thread died."""
        if not self._supervisors_started:
            return ()  # nothing runs yet (the first scan of the recordings), so nothing can be stuck
        stale = self._heartbeat_stale_after
        retiring = self._retiring
        stuck = [
            cid for cid, sup in list(self.supervisors.items()) if id(sup) not in retiring and not sup.healthy(stale)
        ]
        if not self.storage.alive and not self._storage_swapping:
            stuck.append("storage")
        for name, alive in list(self._liveness_checks.items()):
            try:
                ok = alive()
            except Exception:
                log.exception("liveness check %s failed", name)
                ok = False
            if not ok:
                stuck.append(name)
        return tuple(stuck)

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
        self._ffmpeg_version.start()
        allowed = self.storage.recording_allowed()
        for supervisor in self.supervisors.values():
            supervisor.pause(not allowed)
            supervisor.start()
        self._supervisors_started = True
        self._start_transcoder()
        self._temperature = hottest_cpu_sensor()
        self._notifier.ready(self.status_line())

    # Called from signal handlers: they only set a flag and wake the housekeeping loop.

    def request_stop(self) -> None:
        self._stop.set()
        self._wakeup.set()

    def request_reload(self) -> None:
        """SIGHUP: read the configuration again and apply it (see `reload`)."""
        self._reload_requested.set()
        self._wakeup.set()

    def request_status_log(self) -> None:
        """SIGUSR1: log one status line per camera."""
        self._status_requested.set()
        self._wakeup.set()

    def run(self, duration: float | None = None) -> None:
        """Housekeeping until stopped: systemd watchdog and status, retention's pause, temperature."""
        deadline = None if duration is None else time.monotonic() + duration
        next_temperature = time.monotonic() + TEMPERATURE_EVERY
        self._next_watchdog = time.monotonic()
        last_status = ""
        watchdog = self._notifier.watchdog_interval
        tick = min(HOUSEKEEPING_TICK, watchdog) if watchdog is not None else HOUSEKEEPING_TICK
        while not self._stop.is_set():
            # Cleared before the flags are read: a signal arriving after the reads wakes the wait below.
            self._wakeup.clear()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self.reload()
            if self._status_requested.is_set():
                self._status_requested.clear()
                self.log_status()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            self._feed_watchdog()
            status = self.status_line()
            if status != last_status:
                self._notifier.status(status)
                last_status = status
            if now >= next_temperature:
                self._temperature = hottest_cpu_sensor()
                next_temperature = now + TEMPERATURE_EVERY
            self._wakeup.wait(tick if deadline is None else min(tick, deadline - now))

    def _feed_watchdog(self) -> None:
        """WATCHDOG=1 when due and healthy: from the housekeeping loop, and from inside a slow reload."""
        interval = self._notifier.watchdog_interval
        now = time.monotonic()
        if interval is not None and now >= self._next_watchdog and self._healthy():
            self._notifier.watchdog()
            self._next_watchdog = now + interval

    def _healthy(self) -> bool:
        """The watchdog is fed only while every supervision loop goes round and the storage loop lives."""
        return not self.stuck()

    def log_status(self) -> None:
        """One line per camera: what SIGUSR1 asks for (and what an operator wants before acting)."""
        snap = self.snapshot()
        log.info(
            "status: %d camera(s), FFmpeg %s, %s, last config reload %s",
            len(snap.cameras), snap.ffmpeg_version, "healthy" if snap.healthy else "stuck: " + ", ".join(snap.stuck),
            "succeeded" if snap.config_reload_successful else "FAILED (running the previous configuration)",
        )  # fmt: skip
        for view in snap.cameras:
            st = view.status
            restarts = ", ".join(f"{reason} {n}" for reason, n in sorted(st.restarts.items())) or "none"
            log.info(
                "status: %s, FFmpeg pid %s, %.1f fps, %d frames, %d segments, restarts: %s, gap %.1f s%s",
                st.state.value, st.ffmpeg_pid or "-", st.fps, st.frames, st.segments_completed, restarts,
                st.gap_seconds_at(snap.monotonic_now), f", last error: {st.last_error}" if st.last_error else "",
                extra={"camera": view.config.id},
            )  # fmt: skip

    # -- reload ---------------------------------------------------------------------------------
    # -- reload ---------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Read the configuration again and apply it: cameras whose settings changed restart, the others keep
        recording with the same FFmpeg; an invalid new configuration is logged and the running one kept."""
        return self._reloader.reload()

    def _stop_supervisors(self, supervisors: list[CameraSupervisor]) -> bool:
        timeout = self.config.supervisor.stop_timeout
        threads = [
            threading.Thread(target=sup.stop, args=(timeout + 3,), name=f"stop-{sup.camera.id}") for sup in supervisors
        ]
        # In parallel: each FFmpeg takes its own time to finalize.
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return all(not sup.alive for sup in supervisors)

    def _start_transcoder(self) -> None:
        """Night transcoding's worker, when enabled; it yields to every camera (see recorder/transcoding/gate)."""
        worker = transcoding.build_worker(
            self.config,
            ffmpeg=self.tools.ffmpeg or "ffmpeg",
            ffprobe=self.tools.ffprobe or "ffprobe",
            storage_snapshot=self.storage.snapshot,
            cameras_recording=lambda: {cid: sup.snapshot.recording for cid, sup in self.supervisors.items()},
            active_paths=self.active_segments,
            forget=self.storage.forget,
            add_segment=self.storage.add_segment,
        )
        if worker is not None:
            try:
                worker.start()
            except (OSError, RuntimeError) as exc:
                log.error("transcoding: not started: %s", exc)
                worker = None
        # Published once its thread runs: the liveness check reads a worker without a thread as dead.
        self.transcoder = worker

    def _transcoder_alive(self) -> bool:
        worker = self.transcoder  # read once: a reload may unpublish it meanwhile
        return worker is None or worker.alive

    def _transcoded_size_ratio(self) -> float | None:
        worker = self.transcoder
        return worker.transcoder.size_ratio() if worker is not None else None

    def _stop_transcoder(self) -> None:
        # Unpublished first: its thread ending is no death for the liveness check.
        worker, self.transcoder = self.transcoder, None
        if worker is not None:
            worker.stop()

    def stop(self) -> bool:
        """Stop every FFmpeg so that it finalizes its segment; True if all ended in time."""
        self._notifier.stopping()
        if self.transcoder is not None:
            # Asked first, waited for last: its FFmpeg dies within a poll and the segment stays as recorded,
            # while a verification under way never delays the cameras' own stop.
            self.transcoder.request_stop()
        ok = self._stop_supervisors(list(self.supervisors.values()))
        self._stop_transcoder()
        self._ffmpeg_version.stop()
        self.hotplug.stop()
        self.storage.stop()
        self._notifier.close()
        return ok


class _CurrentStorage:
    """Forwards every attribute to the Storage in use; a reload may replace that Storage."""

    def __init__(self, current: Storage) -> None:
        self.current = current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


def _available_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on folder's filesystem, or None when statvfs fails."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize

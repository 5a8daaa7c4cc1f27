"""The recorder: one supervisor per camera, storage and retention, hot-plug, and systemd's view of it.

The Recorder wires its rooms together, orders their start and stop, and gathers the snapshot the exporter
reads; each job lives in its own module: camera_wiring (building a supervisor, hot-plug routed to it), health
(stuck loops, the watchdog), sdnotify (systemd's protocol), housekeeping (the main loop, signals, STATUS= and
the status log), transcoder_slot (night transcoding) and reload (SIGHUP).
"""

from __future__ import annotations

import gc
import logging
import platform
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import cast

from recorder import __version__
from recorder.camera.ledger import CameraLedger
from recorder.camera.supervisor import CameraSupervisor
from recorder.config import Config
from recorder.daemon.camera_wiring import DeviceEvents, SupervisorFactory, udev_context
from recorder.daemon.health import HEARTBEAT_STALE_AFTER, Health
from recorder.daemon.housekeeping import HOUSEKEEPING_TICK, Housekeeping, log_status, status_line
from recorder.daemon.preflight import recordings_folder_at_start
from recorder.daemon.reload import ConfigReloader
from recorder.daemon.sdnotify import Notifier
from recorder.daemon.transcoder_slot import TranscoderSlot
from recorder.ffmpeg.binary import FFmpegTools, FFmpegVersion
from recorder.ffmpeg.presets import encoder_preset
from recorder.ffmpeg.process import Launcher, spawn_ffmpeg
from recorder.state.snapshots import CameraView, RecorderSnapshot
from recorder.storage.export import held_segment_paths
from recorder.storage.facade import Storage
from recorder.storage.recordings_owner import DaemonLock
from recorder.transcoding import service as transcoding
from recorder.transcoding.worker import TranscodeWorker

log = logging.getLogger(__name__)


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
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.started_at = clock()
        # Probed in the background: a hung binary must not hold up the start (nor a reload).
        self.new_version_probe = ffmpeg_version
        self.ffmpeg_version = ffmpeg_version(tools.ffmpeg)
        # One assignment replaces the mapping (see reload): readers in other threads never see a mix.
        self.supervisors: dict[str, CameraSupervisor] = {}
        self.recordings_lock = DaemonLock(config.recording.base_directory)
        # Each camera's counters outlive its supervisor: a reload's successor goes on from them.
        self.ledger = CameraLedger(clock)
        self.health = Health(lambda: self.supervisors, self.notifier, heartbeat_stale_after=heartbeat_stale_after)
        self.housekeeping = Housekeeping(
            self.notifier,
            reload=self.reload,
            log_status=self.log_status,
            feed_watchdog=self.health.feed_watchdog,
            status_line=self.status_line,
        )
        self.reloader = ConfigReloader(self, config_loader, housekeeping_tick=HOUSEKEEPING_TICK)
        self.devices = DeviceEvents(lambda: self.supervisors, udev_context())
        self.transcoder_slot = TranscoderSlot(self._build_transcoder)
        self.supervisor_factory = SupervisorFactory(
            self, launcher=launcher, clock=clock, udev_context=self.devices.context
        )
        # Others keep this object (the webhook's retention requests): a reload that rebuilds the accounting
        # swaps what it forwards to, so they follow without knowing.
        self.storage_slot = CurrentStorage(self.new_storage(config))
        self.storage = cast(Storage, self.storage_slot)
        self.hotplug = self.devices.new_monitor(config)
        for camera in config.enabled_cameras:
            self.supervisors[camera.id] = self.supervisor_factory.build(camera)
        # Read through self at each check: a reload may replace the storage, the monitor or the worker.
        self.health.add_liveness_check("storage", lambda: self.storage.alive)
        self.health.add_liveness_check("hotplug", lambda: self.hotplug.running)
        self.health.add_liveness_check("transcoding", self.transcoder_slot.alive)

    def add_liveness_check(self, name: str, alive: Callable[[], bool]) -> None:
        """Count `name` as stuck (in /-/healthy and for the systemd watchdog) whenever `alive()` is false.

        For threads the composition root owns beside the cameras (the exporter's I/O thread, ...); a check that
        raises counts as dead. Checked only once start() has started the supervisors.
        """
        self.health.add_liveness_check(name, alive)

    def new_storage(self, config: Config) -> Storage:
        return Storage(
            config,
            clock=self.clock,
            active_paths=self._protected_paths,
            on_recording_allowed=self.apply_recording_allowed,
            **transcoding.storage_hooks(config, self.transcoder_slot.size_ratio),
        )

    def _build_transcoder(self) -> TranscodeWorker | None:
        """Night transcoding's worker over the configuration, tools and storage of the moment (None: disabled)."""
        storage = self.storage
        return transcoding.build_worker(
            self.config,
            ffmpeg=self.tools.ffmpeg or "ffmpeg",
            ffprobe=self.tools.ffprobe or "ffprobe",
            storage_snapshot=storage.snapshot,
            cameras_recording=lambda: {cid: sup.snapshot.recording for cid, sup in self.supervisors.items()},
            active_paths=self.active_segments,
            forget=storage.forget,
            add_segment=storage.add_segment,
        )

    def apply_recording_allowed(self, allowed: bool) -> None:
        """Retention's stop_recording policy: pause every camera while the disk is above the threshold.

        The flip itself is logged once, by the storage that decided it.
        """
        for supervisor in self.supervisors.values():
            supervisor.pause(not allowed)

    # -- what others read -----------------------------------------------------------------------

    @property
    def transcoder(self) -> TranscodeWorker | None:
        """Night transcoding's running worker, or None (disabled, not started yet, or stopped)."""
        return self.transcoder_slot.worker

    def active_segments(self) -> list[Path]:
        return [path for sup in self.supervisors.values() for path in sup.active_segments()]

    def take_recordings_folder(self) -> None:
        """Hold the recordings folder against a second daemon (FolderInUse names the one that has it)."""
        self.recordings_lock.acquire()

    def _protected_paths(self) -> list[Path]:
        """What retention must not delete: every segment FFmpeg writes, the one the night transcoder reads, and
        those a clip being downloaded holds."""
        return [*self.active_segments(), *self.transcoder_slot.busy_paths(), *held_segment_paths()]

    def snapshot(self) -> RecorderSnapshot:
        """One consistent read of everything the exporter serves."""
        config = self.config
        transcoder = self.transcoder
        return RecorderSnapshot(
            version=__version__,
            ffmpeg_version=self.ffmpeg_version.value,
            python_version=platform.python_version(),
            started_at=self.started_at,
            cameras=tuple(
                CameraView(sup.camera, sup.snapshot, sup.resources, encoder_preset(sup.camera, config)[0].value)
                for sup in self.supervisors.values()
            ),
            storage=self.storage.snapshot(),
            hotplug_events=MappingProxyType(dict(self.devices.events)),
            hotplug_mode=self.hotplug.mode,
            cpu_temperature_celsius=self.housekeeping.temperature,
            stuck=self.stuck(),
            config_reload_successful=self.reloader.successful,
            config_reload_success_at=self.reloader.success_at,
            segment_time=config.recording.segment_time,
            stall_timeout=config.supervisor.stall_timeout,
            transcoding=transcoder.snapshot() if transcoder is not None else None,
        )

    def stuck(self) -> tuple[str, ...]:
        """Cameras whose supervision loop has not gone round lately, and each registered thread that died."""
        return self.health.stuck()

    def status_line(self) -> str:
        """One line for systemd's STATUS=: each camera's state."""
        return status_line(self.supervisors.values())

    def log_status(self) -> None:
        """One line per camera: what SIGUSR1 asks for (and what an operator wants before acting)."""
        log_status(self.snapshot())

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
        unusable = recordings_folder_at_start(self.config.recording.base_directory)
        if unusable is not None:
            log.error("%s", unusable)
        for supervisor in self.supervisors.values():
            supervisor.discard_leftovers()  # before the scan: its counts never include them
        self.index_recordings()
        self.storage.start()
        self.hotplug.start()
        log.info("hot-plug detection: %s", self.hotplug.mode)
        self.ffmpeg_version.start()
        allowed = self.storage.recording_allowed()
        for supervisor in self.supervisors.values():
            supervisor.pause(not allowed)
            supervisor.start()
        self.health.supervisors_started = True
        self.transcoder_slot.start()
        self.housekeeping.read_temperature()
        self.notifier.ready(self.status_line())

    # Called from signal handlers: they only set a flag and wake the housekeeping loop.

    def request_stop(self) -> None:
        self.housekeeping.request_stop()

    def request_reload(self) -> None:
        """SIGHUP: read the configuration again and apply it (see `reload`)."""
        self.housekeeping.request_reload()

    def request_status_log(self) -> None:
        """SIGUSR1: log one status line per camera."""
        self.housekeeping.request_status_log()

    def run(self, duration: float | None = None) -> None:
        """Housekeeping until stopped: systemd watchdog and status, retention's pause, temperature."""
        self.health.watchdog_due_now()
        self.housekeeping.run(duration)

    def reload(self) -> bool:
        """Read the configuration again and apply it: cameras whose settings changed restart, the others keep
        recording with the same FFmpeg; an invalid new configuration is logged and the running one kept."""
        return self.reloader.reload()

    def stop_supervisors(
        self, supervisors: list[CameraSupervisor], why: Mapping[str, tuple[str, bool]] | None = None
    ) -> bool:
        """Stop these supervisors in parallel (each FFmpeg takes its own time to finalize); True if all ended.

        `why`: camera id -> what its edge to `stopped` says and whether that stop is a recording gap (see
        CameraSupervisor.stop); the daemon stopping otherwise.
        """
        timeout = self.config.supervisor.stop_timeout
        reasons = why or {}

        def stop(sup: CameraSupervisor) -> None:
            said, gap = reasons.get(sup.camera.id, ("daemon stopping", False))
            sup.stop(timeout + 3, why=said, gap=gap)

        threads = [threading.Thread(target=stop, args=(sup,), name=f"stop-{sup.camera.id}") for sup in supervisors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return all(not sup.alive for sup in supervisors)

    def stop(self) -> bool:
        """Stop every FFmpeg so that it finalizes its segment; True if all ended in time."""
        self.notifier.stopping()
        # The transcoder is asked first and waited for last: a verification under way never delays the cameras.
        self.transcoder_slot.request_stop()
        ok = self.stop_supervisors(list(self.supervisors.values()))
        self.transcoder_slot.stop()
        self.ffmpeg_version.stop()
        self.hotplug.stop()
        self.storage.stop()
        self.recordings_lock.release()
        self.notifier.close()
        return ok


class CurrentStorage:
    """Forwards every attribute to the Storage in use; a reload may replace that Storage (`current`)."""

    def __init__(self, current: Storage) -> None:
        self.current = current

    def __getattr__(self, name: str) -> object:
        # Typed as what it is: the Recorder hands this out cast to Storage, whose attributes it forwards.
        return getattr(self.current, name)

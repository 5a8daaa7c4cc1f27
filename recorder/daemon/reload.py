"""SIGHUP: read the configuration again and apply it to a running Recorder.

Cameras whose settings changed restart, the others keep recording with the same FFmpeg; storage, hot-plug
and the night transcoder are replaced only when what they are built from changed. The Recorder is reached
through `Reloadable`: what a reload reads, and the parts of the daemon it replaces.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from typing import Protocol

from recorder.camera.ledger import CameraLedger
from recorder.camera.states import RUNNING_STATES
from recorder.camera.supervisor import CameraSupervisor
from recorder.config import CameraConfig, Config, ConfigError
from recorder.daemon.camera_wiring import DeviceEvents, SupervisorFactory, device_cameras
from recorder.daemon.health import Health
from recorder.daemon.sdnotify import Notifier
from recorder.daemon.transcoder_slot import TranscoderSlot
from recorder.devices.hotplug import HotplugMonitor
from recorder.domain.vocabulary import RestartReason
from recorder.ffmpeg.binary import FFmpegTools, FFmpegVersion, find_tools
from recorder.ffmpeg.presets import FFmpegCommand, build_command
from recorder.storage.facade import Storage
from recorder.storage.recordings_owner import DaemonLock, FolderInUse
from recorder.transcoding import service as transcoding

log = logging.getLogger(__name__)


class StorageSlot(Protocol):
    """The holder every user of the storage reads through: a reload that rebuilds the accounting swaps it."""

    current: Storage


class Reloadable(Protocol):
    """The running daemon as a reload sees it (the Recorder). Plain attributes are what a reload replaces;
    properties and methods it only reads or calls."""

    config: Config
    tools: FFmpegTools
    supervisors: dict[str, CameraSupervisor]
    ffmpeg_version: FFmpegVersion
    hotplug: HotplugMonitor
    recordings_lock: DaemonLock

    @property
    def started_at(self) -> float: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def notifier(self) -> Notifier: ...
    @property
    def health(self) -> Health: ...
    @property
    def ledger(self) -> CameraLedger: ...
    @property
    def new_version_probe(self) -> Callable[[str], FFmpegVersion]: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def storage_slot(self) -> StorageSlot: ...
    @property
    def devices(self) -> DeviceEvents: ...
    @property
    def supervisor_factory(self) -> SupervisorFactory: ...
    @property
    def transcoder_slot(self) -> TranscoderSlot: ...

    def status_line(self) -> str: ...
    def new_storage(self, config: Config) -> Storage: ...
    def apply_recording_allowed(self, allowed: bool) -> None: ...
    def stop_supervisors(
        self, supervisors: list[CameraSupervisor], why: Mapping[str, tuple[str, bool]] | None = None
    ) -> bool: ...


class ConfigReloader:
    """Applies a fresh configuration to `recorder` (one reload at a time, from its housekeeping thread), and
    remembers how the last one went for the exporter."""

    def __init__(
        self, recorder: Reloadable, config_loader: Callable[[], Config] | None, *, housekeeping_tick: float
    ) -> None:
        self._recorder = recorder
        self._config_loader = config_loader
        self._housekeeping_tick = housekeeping_tick  # the longest the watchdog waits while a slow step runs
        self.successful = True
        self.success_at = recorder.started_at

    def reload(self) -> bool:
        """Read the configuration again and apply it: cameras whose settings changed restart, the others keep
        recording with the same FFmpeg; an invalid new configuration is logged and the running one kept."""
        rec = self._recorder
        if self._config_loader is None:
            log.warning("reload asked for, but this recorder has no configuration file to read again")
            return False
        rec.notifier.reloading()
        try:
            new = self._config_loader()
            tools = find_tools(new.system)
            if tools.ffmpeg is None:
                raise ConfigError(["system.ffmpeg: no FFmpeg found: install ffmpeg or set system.ffmpeg"], new.source)
            try:
                new.recording.base_directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                where = new.recording.base_directory
                raise ConfigError([f"recording.base_directory: cannot use {where}: {exc.strerror or exc}"]) from None
            new_lock = self._lock_new_folder(new)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                log.error("reload: %s", line)
            log.error("reload: the new configuration is invalid; still running the previous one")
            return self._done(False)
        except Exception:
            log.exception("reload failed; still running the previous configuration")
            return self._done(False)
        try:
            self._apply(new, tools)
            if new_lock is not None:
                rec.recordings_lock.release()
                rec.recordings_lock = new_lock
        except Exception:
            # Past validation nothing should fail; if something does, say so and keep the daemon up.
            rec.health.retiring = set()
            log.exception("reload: applying the new configuration failed part way")
            return self._done(False)
        self.success_at = rec.clock()
        return self._done(True)

    def _done(self, successful: bool) -> bool:
        """Record the outcome and tell systemd the daemon is ready again (READY=1 after RELOADING=1)."""
        self.successful = successful
        rec = self._recorder
        rec.notifier.ready(rec.status_line())
        return successful

    def _lock_new_folder(self, new: Config) -> DaemonLock | None:
        """A new recordings folder is held before anything records into it (None: the folder is the same)."""
        rec = self._recorder
        if new.recording.base_directory == rec.config.recording.base_directory:
            return None
        lock = DaemonLock(new.recording.base_directory)
        try:
            lock.acquire(wait=0)
        except FolderInUse as exc:
            raise ConfigError([f"recording.base_directory: {exc}"]) from None
        return lock

    def _apply(self, new: Config, tools: FFmpegTools) -> None:
        rec = self._recorder
        old, old_tools = rec.config, rec.tools
        for warning in new.warnings:
            log.warning("config: %s", warning)
        if new.exporter != old.exporter:
            # The HTTP listener, TLS and basic auth are set up once; changing them live would drop scrapes.
            log.warning("reload: exporter settings changed; they take effect when the daemon restarts")
            new = replace(new, exporter=old.exporter)
        old_cameras = {c.id: c for c in old.enabled_cameras}
        new_cameras = {c.id: c for c in new.enabled_cameras}
        removed = [cid for cid in old_cameras if cid not in new_cameras]
        added = [cid for cid in new_cameras if cid not in old_cameras]
        changed: dict[str, str] = {}  # camera id -> why it restarts
        updated: dict[str, str] = {}  # camera id -> what it takes without a restart
        for cid in new_cameras.keys() & old_cameras.keys():
            why = restart_reasons(old, old_tools, old_cameras[cid], new, tools, new_cameras[cid])
            if why:
                changed[cid] = ", ".join(why)
            elif old_cameras[cid] != new_cameras[cid]:
                updated[cid] = ", ".join(
                    f"{name} changed" for name in changed_fields(old_cameras[cid], new_cameras[cid])
                )
        changed = {cid: changed[cid] for cid in new_cameras if cid in changed}  # in configuration order
        # Ended first, each FFmpeg finalizing its segment, in parallel as at stop. They stay listed (as
        # stopping, then stopped) until their successors run, and are not "stuck" meanwhile.
        retiring = [rec.supervisors[cid] for cid in (*removed, *changed) if cid in rec.supervisors]
        # A reload that ends a running FFmpeg to start another restarts it: counted with reason "config".
        restarting = {
            cid for cid in changed if cid in rec.supervisors and rec.supervisors[cid].snapshot.state in RUNNING_STATES
        }
        stop_why = {cid: ("removed from the configuration by reload", False) for cid in removed}
        stop_why.update({cid: (f"reload: {why}", True) for cid, why in changed.items()})
        rec.health.retiring = {id(sup) for sup in retiring}
        if not self._stop_supervisors_feeding_watchdog(retiring, stop_why):
            late = ", ".join(sup.camera.id for sup in retiring if sup.alive)
            log.error("reload: the FFmpeg of %s did not stop in time; its last segment may be cut", late)
        for sup in retiring:
            cid = sup.camera.id
            restart = RestartReason.CONFIG if cid in restarting else None
            rec.ledger.retire(sup, restart=restart, why=f"reload: {changed[cid]}" if cid in changed else "")
        rec.config, rec.tools = new, tools
        if tools.ffmpeg != old_tools.ffmpeg:
            assert tools.ffmpeg is not None
            rec.ffmpeg_version.stop()
            rec.ffmpeg_version = rec.new_version_probe(tools.ffmpeg)
            rec.ffmpeg_version.start()
        # Retention's hooks (kept originals, capacity) follow the transcoding section; the worker follows both.
        storage_changed = storage_settings(new) != storage_settings(old) or new.transcoding != old.transcoding
        if storage_changed or transcoding.transcoding_settings(new) != transcoding.transcoding_settings(old):
            self._feeding_watchdog(rec.transcoder_slot.stop)
        if storage_changed:
            self._replace_storage(new)
        if device_cameras(new) != device_cameras(old) or new.system.udev != old.system.udev:
            with rec.health.replacing("hotplug"):
                old_hotplug, rec.hotplug = rec.hotplug, rec.devices.new_monitor(new)
                old_hotplug.stop()
                rec.hotplug.start()
        allowed = rec.storage.recording_allowed()
        started: dict[str, CameraSupervisor] = {}
        for cid in (*changed, *added):
            supervisor = rec.supervisor_factory.build(new_cameras[cid])
            supervisor.pause(not allowed)
            supervisor.start()
            started[cid] = supervisor
            if cid in changed:
                log.info("reload: restarted %s: %s", cid, changed[cid], extra={"camera": cid})
        for cid, what in updated.items():
            camera = new_cameras[cid]
            rec.supervisors[cid].reconfigure(camera, rec.supervisor_factory.command_factory(camera))
            log.info("reload: %s takes the new settings without a restart: %s", cid, what, extra={"camera": cid})
        # One assignment: readers in other threads (scrapes) see the old dict or the new, never a mix.
        rec.supervisors = {cid: started.get(cid) or rec.supervisors[cid] for cid in new_cameras}
        if storage_changed:
            # The new accounting tells only of flips, and its flag was read above: unchanged cameras follow it
            # too (paused by the old accounting, they would otherwise stay paused for good).
            rec.apply_recording_allowed(rec.storage.recording_allowed())
        rec.health.retiring = set()
        if rec.transcoder_slot.worker is None and rec.health.supervisors_started:
            rec.transcoder_slot.start()
        kept = len(new_cameras) - len(added) - len(changed)
        parts = [f"restarted {cid} ({why})" for cid, why in changed.items()]
        parts += [f"updated {cid} without a restart ({what})" for cid, what in updated.items()]
        parts += [f"started {', '.join(added)} (added)"] if added else []
        parts += [f"stopped {', '.join(removed)} (removed or disabled)"] if removed else []
        parts += [f"{kept} camera(s) kept recording with the same FFmpeg"]
        log.info("configuration reloaded from %s: %s", new.source or "the configuration", "; ".join(parts))

    def _feeding_watchdog(self, step: Callable[[], object]) -> None:
        """Run a slow reload step (stopping FFmpegs, the transcoder, a rescan) while the watchdog is fed.

        The step runs in its own thread; this one keeps feeding WATCHDOG=1 while every other loop is healthy, so
        a reload longer than WatchdogSec is no restart, and a supervisor that wedges meanwhile still stops it.
        """
        rec = self._recorder
        interval = rec.notifier.watchdog_interval
        if interval is None:
            step()
            return
        failure: list[BaseException] = []

        def run() -> None:
            try:
                step()
            except BaseException as exc:  # handed to the reload, which decides
                failure.append(exc)

        thread = threading.Thread(target=run, name="reload-step", daemon=True)
        thread.start()
        while thread.is_alive():
            rec.health.feed_watchdog()
            thread.join(min(interval, self._housekeeping_tick) / 2)
        if failure:
            raise failure[0]

    def _stop_supervisors_feeding_watchdog(
        self, supervisors: list[CameraSupervisor], why: dict[str, tuple[str, bool]]
    ) -> bool:
        rec = self._recorder
        stopped: list[bool] = []
        self._feeding_watchdog(lambda: stopped.append(rec.stop_supervisors(supervisors, why)))
        return all(stopped)

    def _replace_storage(self, new: Config) -> None:
        """Retention settings, the recordings folder or the camera set changed: account the disk afresh."""
        rec = self._recorder
        storage = rec.new_storage(new)
        self._feeding_watchdog(storage.scan)
        # Read the disk now: its recording_allowed flag starts True, and the cameras follow it right away.
        storage.refresh_filesystem()
        gc.freeze()
        with rec.health.replacing("storage"):
            old = rec.storage_slot.current
            # Counters never go down across a reload: the new accounting goes on from the old one's before
            # any scrape can read it, then takes what the old counted in the pass it finishes while stopping.
            carried = storage.carry_counters_from(old)
            rec.storage_slot.current = storage
            # The old worker finishes the pass it is in, which may be long on a big disk.
            self._feeding_watchdog(old.stop)
            storage.carry_counters_from(old, since=carried)
            storage.start()
        log.info("reload: retention and disk accounting restarted for the new settings")


# Camera settings FFmpeg's command and the supervisor do not depend on: a reload applies them to the running
# camera (its labels, its retention) without a restart. Every other field changes the command or how the
# device is found.
LIVE_CAMERA_FIELDS = frozenset({"name", "cleanup_days"})


def changed_fields(old: CameraConfig, new: CameraConfig) -> list[str]:
    """The names of `old`'s fields `new` has another value for, in declaration order."""
    return [f.name for f in fields(CameraConfig) if getattr(old, f.name) != getattr(new, f.name)]


def restart_reasons(
    old: Config, old_tools: FFmpegTools, old_camera: CameraConfig,
    new: Config, new_tools: FFmpegTools, new_camera: CameraConfig,
) -> list[str]:  # fmt: skip
    """Why a reload from `old` to `new` must restart the camera, as the log says it; empty: it need not.

    Everything the camera's supervisor and FFmpeg are built from counts, LIVE_CAMERA_FIELDS aside.
    """
    why = [f"{name} changed" for name in changed_fields(old_camera, new_camera) if name not in LIVE_CAMERA_FIELDS]
    if old_tools.ffmpeg != new_tools.ffmpeg:
        why.append("system.ffmpeg changed")
    if not why:
        old_command, new_command = _command(old, old_tools, old_camera), _command(new, new_tools, new_camera)
        if (old_command.argv, old_command.env) != (new_command.argv, new_command.env):
            sections = [
                name for name in ("encoding", "recording", "system") if getattr(old, name) != getattr(new, name)
            ]
            why.append(f"{' and '.join(sections) or 'FFmpeg'} settings changed")
    if old.recording.segment_time != new.recording.segment_time and not any("recording" in w for w in why):
        why.append("recording.segment_time changed")  # the supervisor's segment histogram is built from it
    if old.supervisor != new.supervisor:
        why.append("supervisor settings changed")
    if old_tools.ffprobe != new_tools.ffprobe:
        why.append("system.ffprobe changed")
    return why


def _command(config: Config, tools: FFmpegTools, camera: CameraConfig) -> FFmpegCommand:
    # Any fixed node will do for a device found by udev: both sides are built alike.
    node = camera.location or "/dev/video-by-match"
    return build_command(camera, config, tools.ffmpeg or "ffmpeg", device_node=node)


def storage_settings(config: Config) -> tuple[object, ...]:
    """What the storage accounting is built from: a reload that changes any of it re-reads the disk."""
    return (
        config.storage,
        config.recording.base_directory,
        config.recording.segment_time,
        tuple((c.id, config.max_age_days(c)) for c in config.cameras),
    )

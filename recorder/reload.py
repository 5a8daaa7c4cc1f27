"""SIGHUP: read the configuration again and apply it to a running Recorder.

Cameras whose settings changed restart, the others keep recording with the same FFmpeg; storage, hot-plug
and the night transcoder are replaced only when what they are built from changed. This is the Recorder's
reload half, kept in its own module for size: it reads and sets the recorder's state as a method would.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from recorder.config import CameraConfig, Config, ConfigError, SourceKind
from recorder.ffmpeg_binary import FFmpegTools, find_tools
from recorder.presets import build_command
from recorder.supervisor import CameraSupervisor
from recorder.transcoding import service as transcoding

if TYPE_CHECKING:
    from recorder.daemon import Recorder

log = logging.getLogger(__name__)


class ConfigReloader:
    """Applies a fresh configuration to `recorder` (one reload at a time, from its housekeeping thread)."""

    def __init__(self, recorder: Recorder, *, housekeeping_tick: float) -> None:
        self._recorder = recorder
        self._housekeeping_tick = housekeeping_tick  # the longest the watchdog waits while a slow step runs

    def reload(self) -> bool:
        """Read the configuration again and apply it: cameras whose settings changed restart, the others keep
        recording with the same FFmpeg; an invalid new configuration is logged and the running one kept."""
        rec = self._recorder
        if rec._config_loader is None:
            log.warning("reload asked for, but this recorder has no configuration file to read again")
            return False
        rec._notifier.reloading()
        try:
            new = rec._config_loader()
            tools = find_tools(new.system)
            if tools.ffmpeg is None:
                raise ConfigError(["system.ffmpeg: no FFmpeg found: install ffmpeg or set system.ffmpeg"], new.source)
            try:
                new.recording.base_directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                where = new.recording.base_directory
                raise ConfigError([f"recording.base_directory: cannot use {where}: {exc.strerror or exc}"]) from None
        except ConfigError as exc:
            rec._reload_successful = False
            for line in str(exc).splitlines():
                log.error("reload: %s", line)
            log.error("reload: the new configuration is invalid; still running the previous one")
            rec._notifier.ready(rec.status_line())
            return False
        except Exception:
            rec._reload_successful = False
            log.exception("reload failed; still running the previous configuration")
            rec._notifier.ready(rec.status_line())
            return False
        try:
            self._apply(new, tools)
        except Exception:
            # Past validation nothing should fail; if something does, say so and keep the daemon up.
            rec._reload_successful = False
            rec._retiring = set()
            log.exception("reload: applying the new configuration failed part way")
            rec._notifier.ready(rec.status_line())
            return False
        rec._reload_successful = True
        rec._reload_success_at = rec._clock()
        rec._notifier.ready(rec.status_line())
        return True

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
        changed = [
            cid
            for cid in new_cameras
            if cid in old_cameras
            and recording_settings(old, old_tools, old_cameras[cid]) != recording_settings(new, tools, new_cameras[cid])
        ]
        # Ended first, each FFmpeg finalizing its segment, in parallel as at stop. They stay listed (as
        # stopping, then stopped) until their successors run, and are not "stuck" meanwhile.
        retiring = [rec.supervisors[cid] for cid in (*removed, *changed) if cid in rec.supervisors]
        rec._retiring = {id(sup) for sup in retiring}
        if not self._stop_supervisors_feeding_watchdog(retiring):
            late = ", ".join(sup.camera.id for sup in retiring if sup.alive)
            log.error("reload: the FFmpeg of %s did not stop in time; its last segment may be cut", late)
        rec.config, rec.tools = new, tools
        if tools.ffmpeg != old_tools.ffmpeg:
            assert tools.ffmpeg is not None
            rec._ffmpeg_version.stop()
            rec._ffmpeg_version = rec._new_version_probe(tools.ffmpeg)
            rec._ffmpeg_version.start()
        # Retention's hooks (kept originals, capacity) follow the transcoding section; the worker follows both.
        storage_changed = storage_settings(new) != storage_settings(old) or new.transcoding != old.transcoding
        if storage_changed or transcoding.transcoding_settings(new) != transcoding.transcoding_settings(old):
            self._feeding_watchdog(rec._stop_transcoder)
        if storage_changed:
            self._replace_storage(new)
        if device_cameras(new) != device_cameras(old) or new.system.udev != old.system.udev:
            rec._hotplug_swapping = True
            try:
                old_hotplug, rec.hotplug = rec.hotplug, rec._new_hotplug(new)
                old_hotplug.stop()
                rec.hotplug.start()
            finally:
                rec._hotplug_swapping = False
        allowed = rec.storage.recording_allowed()
        started: dict[str, CameraSupervisor] = {}
        for cid in (*changed, *added):
            supervisor = rec._new_supervisor(new_cameras[cid])
            supervisor.pause(not allowed)
            supervisor.start()
            started[cid] = supervisor
        # One assignment: readers in other threads (scrapes) see the old dict or the new, never a mix.
        rec.supervisors = {cid: started.get(cid) or rec.supervisors[cid] for cid in new_cameras}
        if storage_changed:
            # The new accounting tells only of flips, and its flag was read above: unchanged cameras follow it
            # too (paused by the old accounting, they would otherwise stay paused for good).
            rec._recording_allowed(rec.storage.recording_allowed())
        rec._retiring = set()
        if rec.transcoder is None and rec._supervisors_started:
            rec._start_transcoder()
        kept = len(new_cameras) - len(added) - len(changed)
        log.info(
            "configuration reloaded from %s: %s",
            new.source or "the configuration",
            "; ".join(
                part
                for part in (
                    f"restarted {', '.join(changed)} (settings changed)" if changed else "",
                    f"started {', '.join(added)} (added)" if added else "",
                    f"stopped {', '.join(removed)} (removed or disabled)" if removed else "",
                    f"{kept} camera(s) unchanged, still recording",
                )
                if part
            ),
        )

    def _feeding_watchdog(self, step: Callable[[], object]) -> None:
        """Run a slow reload step (stopping FFmpegs, the transcoder, a rescan) while the watchdog is fed.

        The step runs in its own thread; this one keeps feeding WATCHDOG=1 while every other loop is healthy, so
        a reload longer than WatchdogSec is no restart, and a supervisor that wedges meanwhile still stops it.
        """
        rec = self._recorder
        interval = rec._notifier.watchdog_interval
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
            rec._feed_watchdog()
            thread.join(min(interval, self._housekeeping_tick) / 2)
        if failure:
            raise failure[0]

    def _stop_supervisors_feeding_watchdog(self, supervisors: list[CameraSupervisor]) -> bool:
        rec = self._recorder
        stopped: list[bool] = []
        self._feeding_watchdog(lambda: stopped.append(rec._stop_supervisors(supervisors)))
        return all(stopped)

    def _replace_storage(self, new: Config) -> None:
        """Retention settings, the recordings folder or the camera set changed: account the disk afresh."""
        rec = self._recorder
        storage = rec._new_storage(new)
        self._feeding_watchdog(storage.scan)
        # Read the disk now: its recording_allowed flag starts True, and the cameras follow it right away.
        storage.refresh_filesystem()
        gc.freeze()
        rec._storage_swapping = True
        try:
            old, rec._storage.current = rec._storage.current, storage
            # The old worker finishes the pass it is in, which may be long on a big disk.
            self._feeding_watchdog(old.stop)
            storage.start()
        finally:
            rec._storage_swapping = False
        log.info("reload: retention and disk accounting restarted for the new settings")


def device_cameras(config: Config) -> list[CameraConfig]:
    return [c for c in config.enabled_cameras if c.source is SourceKind.DEVICE]


def recording_settings(config: Config, tools: FFmpegTools, camera: CameraConfig) -> tuple[object, ...]:
    """Everything a camera's supervisor and FFmpeg are built from: equal means a reload leaves it recording."""
    ffmpeg = tools.ffmpeg or "ffmpeg"
    # Any fixed node will do for a device found by udev: both sides are built alike.
    command = build_command(camera, config, ffmpeg, device_node=camera.location or "/dev/video-by-match")
    return (
        camera,
        command.argv,
        tuple(sorted(command.env.items())),
        config.supervisor,
        config.recording.segment_time,
        tools.ffprobe,
    )


def storage_settings(config: Config) -> tuple[object, ...]:
    """What the storage accounting is built from: a reload that changes any of it re-reads the disk."""
    return (
        config.storage,
        config.recording.base_directory,
        config.recording.segment_time,
        tuple((c.id, config.max_age_days(c)) for c in config.cameras),
    )

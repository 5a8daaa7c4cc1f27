"""What the running recorder tells about itself: the snapshot the exporter reads, systemd's STATUS= line and
the per-camera status log SIGUSR1 asks for. Reads the Recorder; changes nothing."""

from __future__ import annotations

import logging
import platform
from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING

from recorder import __version__
from recorder.camera.supervisor import CameraSupervisor
from recorder.ffmpeg.presets import encoder_preset
from recorder.state.snapshots import CameraView, RecorderSnapshot

if TYPE_CHECKING:
    from recorder.daemon.recorder import Recorder

# The daemon's log name, as before the Recorder was split into rooms (operators grep for it).
log = logging.getLogger("recorder.daemon")


def build_snapshot(recorder: Recorder) -> RecorderSnapshot:
    """One consistent read of everything the exporter serves."""
    config = recorder.config
    transcoder = recorder.transcoder
    return RecorderSnapshot(
        version=__version__,
        ffmpeg_version=recorder.ffmpeg_version.value,
        python_version=platform.python_version(),
        started_at=recorder.started_at,
        cameras=tuple(
            CameraView(sup.camera, sup.snapshot, sup.resources, encoder_preset(sup.camera, config)[0].value)
            for sup in recorder.supervisors.values()
        ),
        storage=recorder.storage.snapshot(),
        hotplug_events=MappingProxyType(dict(recorder.devices.events)),
        hotplug_mode=recorder.hotplug.mode,
        cpu_temperature_celsius=recorder.housekeeping.temperature,
        stuck=recorder.stuck(),
        config_reload_successful=recorder.reloader.successful,
        config_reload_success_at=recorder.reloader.success_at,
        segment_time=config.recording.segment_time,
        stall_timeout=config.supervisor.stall_timeout,
        transcoding=transcoder.snapshot() if transcoder is not None else None,
    )


def status_line(supervisors: Iterable[CameraSupervisor]) -> str:
    """One line for systemd's STATUS=: each camera's state."""
    parts = [f"{sup.camera.id}: {sup.snapshot.state.value}" for sup in supervisors]
    return ", ".join(parts) or "no cameras enabled"


def log_status(snap: RecorderSnapshot) -> None:
    """One line per camera: what SIGUSR1 asks for (and what an operator wants before acting)."""
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

"""How the daemon wires the transcoder in: its worker, and the hooks it gives retention (kept originals
reclaimed first, and the capacity when segments older than min_age_days shrink by the transcoding ratio)."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TypedDict

from recorder.config import Config
from recorder.footage.segments import CompletedSegment
from recorder.state.snapshots import StorageSnapshot
from recorder.transcoding.gate import DiskReading, Gate
from recorder.transcoding.originals import make_reclaimer
from recorder.transcoding.worker import Transcoder, TranscodeWorker

DAY = 86400.0


def transcoded_capacity_seconds(usable_bytes: float, rate: float, min_age_days: float, size_ratio: float) -> float:
    """Seconds of recording that fit in `usable_bytes` at `rate` bytes/s when footage past min_age shrinks.

    The newest `min_age_days` are kept as recorded (`rate` bytes per second); everything older takes
    `size_ratio` (transcoded bytes / original bytes, measured) of that. With capacity C:
    C <= min_age: C = usable / rate; else usable = min_age * rate + (C - min_age) * rate * ratio.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    usable = max(usable_bytes, 0.0)
    young = min_age_days * DAY
    if usable <= young * rate or size_ratio <= 0:
        return usable / rate
    return young + (usable - young * rate) / (rate * min(size_ratio, 1.0))


class StorageHooks(TypedDict, total=False):
    """Storage's keyword arguments that night transcoding supplies."""

    reclaimers: list[Callable[[int], int]]
    capacity_model: Callable[[float, float], float]


def storage_hooks(config: Config, size_ratio: Callable[[], float | None]) -> StorageHooks:
    """Storage's keyword arguments: kept originals reclaimed before footage, capacity with the measured ratio.

    The reclaimer runs even with transcoding disabled: originals kept by an earlier run still go first.
    """
    base = Path(os.path.abspath(config.recording.base_directory))
    reclaimers = [make_reclaimer(base, lambda: config.transcoding.keep_original_days)]
    if not config.transcoding.enabled:
        return {"reclaimers": reclaimers}
    min_age = config.transcoding.min_age_days

    def capacity(usable: float, rate: float) -> float:
        ratio = size_ratio()
        if ratio is None:
            return usable / rate  # nothing measured yet: no promise
        return transcoded_capacity_seconds(usable, rate, min_age, ratio)

    return {"reclaimers": reclaimers, "capacity_model": capacity}


def build_worker(
    config: Config,
    *,
    ffmpeg: str,
    ffprobe: str,
    storage_snapshot: Callable[[], StorageSnapshot],
    cameras_recording: Callable[[], Mapping[str, bool]],
    active_paths: Callable[[], Collection[Path]],
    forget: Callable[[Path], object],
    add_segment: Callable[[CompletedSegment], object],
) -> TranscodeWorker | None:
    """The daemon's transcoding thread (not started), or None when transcoding is off."""
    if not config.transcoding.enabled:
        return None

    def disk() -> DiskReading | None:
        snap = storage_snapshot()
        if snap.used_ratio is None or snap.filesystem_avail_bytes is None:
            return None
        return DiskReading(snap.used_ratio, snap.filesystem_avail_bytes, snap.low_space_warning_ratio)

    def replaced(camera: str, path: Path, start: float, duration: float, size: int) -> None:
        # Same name, new size: retention and the metrics account the replacement from now on.
        forget(path)
        add_segment(CompletedSegment(camera, path, start, duration, size))

    gate = Gate(config.transcoding, disk=disk, cameras_recording=cameras_recording)
    transcoder = Transcoder(
        config, ffmpeg=ffmpeg, ffprobe=ffprobe, gate=gate, active_paths=active_paths, on_replaced=replaced
    )
    return TranscodeWorker(transcoder)


def transcoding_settings(config: Config) -> tuple[object, ...]:
    """What the worker is built from: a reload that changes any of it restarts the worker."""
    return (config.transcoding, config.encoding, config.recording.base_directory, tuple(c.id for c in config.cameras))

"""The immutable snapshots the recorder publishes and everybody else reads: one camera, storage, the whole.

The exporter, the status page and the CLI read only these (and the configuration); they are published
whole after every change and never mutated, so a reader needs no lock and never waits on recording.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from recorder.config import CameraConfig
from recorder.domain.vocabulary import CameraState, TranscodeState

# Restarts kept for the status page's timeline: a day of a camera restarting every half hour.
RECENT_RESTARTS_KEPT = 48


class RestartEvent(NamedTuple):
    """One FFmpeg restart, for the timeline: when it was counted and why."""

    at: float  # Unix time
    reason: str  # a restart reason, as in CameraSnapshot.restarts
    error: str | None  # the camera's last error at that moment


def _empty() -> Mapping[str, int]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts of an observed quantity, immutable (a new one per observation)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bound, cumulative, plus +Inf last
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(bounds, (0,) * (len(bounds) + 1))

    def observe(self, value: float) -> Histogram:
        counts = tuple(
            c + (1 if i == len(self.bounds) or value <= self.bounds[i] else 0) for i, c in enumerate(self.counts)
        )
        return Histogram(self.bounds, counts, self.total + value)

    @property
    def count(self) -> int:
        return self.counts[-1]

    def rebucketed(self, bounds: tuple[float, ...]) -> Histogram:
        """This histogram under new bucket bounds (a reload changed segment_time): each new bound counts the
        observations the largest old bound at or below it counted, so a bound both layouts share keeps its
        count exactly and no exposed bucket goes down; the rest stay in +Inf, the count and the sum (their
        values are not kept, so they cannot be placed more finely)."""
        if bounds == self.bounds:
            return self
        counts = []
        for bound in bounds:
            below = [count for old_bound, count in zip(self.bounds, self.counts, strict=False) if old_bound <= bound]
            counts.append(below[-1] if below else 0)
        return Histogram(bounds, (*counts, self.count), self.total)


@dataclass(frozen=True)
class CameraSnapshot:
    """What one camera's supervisor knows, published whole after every change; never mutated."""

    camera: str
    state: CameraState
    present: bool
    taken_at: float  # monotonic time the snapshot was published
    frames: int = 0  # totals over all FFmpeg runs since the daemon started
    dropped_frames: int = 0
    duplicated_frames: int = 0
    fps: float = 0.0
    speed: float = 0.0
    bitrate_bits_per_second: float = 0.0
    written_bytes: int = 0
    segments_completed: int = 0
    segment_durations: Histogram = field(default_factory=lambda: Histogram.empty(()))
    last_progress_at: float | None = None  # Unix time
    last_segment_at: float | None = None  # Unix time
    restarts: Mapping[str, int] = field(default_factory=_empty)
    discarded: Mapping[str, int] = field(default_factory=_empty)
    gap_seconds: float = 0.0  # accumulated up to taken_at
    gap_growing: bool = False  # the camera records nothing now while it should
    ffmpeg_pid: int | None = None
    last_error: str | None = None
    recent_restarts: tuple[RestartEvent, ...] = ()  # oldest first, at most RECENT_RESTARTS_KEPT

    @property
    def recording(self) -> bool:
        return self.state is CameraState.RECORDING

    def gap_seconds_at(self, monotonic_now: float) -> float:
        """The recording gap extrapolated to now, so a scrape sees it grow between publications."""
        if self.gap_growing:
            return self.gap_seconds + max(0.0, monotonic_now - self.taken_at)
        return self.gap_seconds


def recent_restarts(
    previous: CameraSnapshot, restarts: Mapping[str, int], now: float, error: str | None
) -> tuple[RestartEvent, ...]:
    """`previous`'s recent restarts plus one event per restart counted since it was published, bounded.

    Derived from the counters rather than told at each restart, so every place that counts one is covered.
    """
    grown = [
        RestartEvent(now, reason, error)
        for reason, count in restarts.items()
        for _ in range(max(0, count - previous.restarts.get(reason, 0)))
    ]
    if not grown:
        return previous.recent_restarts
    return (*previous.recent_restarts, *grown)[-RECENT_RESTARTS_KEPT:]


@dataclass(frozen=True)
class ResourceUsage:
    """What one camera's FFmpeg costs the machine."""

    cpu_seconds: float = 0.0  # all FFmpeg runs of this camera, finished ones included
    rss_bytes: int = 0  # the current FFmpeg, 0 when none runs


@dataclass(frozen=True)
class CameraStorage:
    """One camera's recordings on disk, as of the last change."""

    camera: str
    files: int
    bytes: int
    oldest_start: float | None  # Unix time; None without segments
    newest_start: float | None
    write_rate_bytes_per_second: float  # 0.0 when nothing was completed in the rate window
    max_age_seconds: float | None  # None: age cleanup is off for this camera
    configured: bool = True  # False: a folder of a camera not in the configuration (removed or renamed)


@dataclass(frozen=True)
class StorageSnapshot:
    """Everything the metrics collector and `--stats` show, read without locks or disk access."""

    path: str  # the recordings folder, the metrics' `path` label
    cameras: Mapping[str, CameraStorage]  # every configured camera, in configuration order
    filesystem_size_bytes: int | None  # None until the first filesystem check succeeds
    filesystem_avail_bytes: int | None
    used_ratio: float | None  # 1 - avail / size
    writable: bool | None  # result of the last write probe; None before the first check
    checked_at: float | None  # Unix time of the last filesystem check
    write_rate_bytes_per_second: float  # sum over cameras
    capacity_seconds: float | None  # see Storage.capacity_seconds; None when the rate or size is unknown
    recording_allowed: bool
    max_age_seconds: float | None  # the storage section's default; per camera in `cameras`
    disk_usage_threshold_ratio: float
    low_space_warning_ratio: float
    pressure_target_ratio: float
    min_free_unmet: bool  # min_free_minutes wants more than retention may free without going below the target
    deleted_files: Mapping[tuple[str, str], int]  # (camera, reason) -> files, every pair present
    deleted_bytes: Mapping[tuple[str, str], int]  # (camera, reason) -> bytes
    runs: Mapping[str, int]  # trigger -> passes, every trigger present
    last_run_timestamp: float | None  # Unix time the last (non dry-run) pass finished
    # Folders of cameras not in the configuration that hold their segments, by name: aged by the storage
    # section's cleanup_days, deleted first under disk pressure; no write rate. Not in `files` and `bytes`.
    orphans: Mapping[str, CameraStorage] = field(default_factory=lambda: MappingProxyType({}))
    orphaned_deleted_files: Mapping[str, int] = field(default_factory=_empty)  # reason -> files, all orphans
    orphaned_deleted_bytes: Mapping[str, int] = field(default_factory=_empty)  # reason -> bytes

    @property
    def files(self) -> int:
        """Files of the configured cameras."""
        return sum(c.files for c in self.cameras.values())

    @property
    def bytes(self) -> int:
        """Bytes of the configured cameras."""
        return sum(c.bytes for c in self.cameras.values())

    @property
    def orphaned_bytes(self) -> int:
        return sum(c.bytes for c in self.orphans.values())

    @property
    def orphaned_files(self) -> int:
        return sum(c.files for c in self.orphans.values())


@dataclass(frozen=True)
class CameraView:
    """Everything the exporter shows of one camera."""

    config: CameraConfig
    status: CameraSnapshot
    resources: ResourceUsage
    codec: str | None = None  # the encoder FFmpeg runs (copy, h264_qsv, ...), as the config now says


@dataclass(frozen=True)
class TranscodeSnapshot:
    """What the exporter shows of the transcoder; counters since the daemon started."""

    state: TranscodeState
    cameras: tuple[str, ...]
    segments: Mapping[tuple[str, str], int]  # (camera, result) -> segments, every pair present
    input_bytes: Mapping[str, int]
    output_bytes: Mapping[str, int]
    seconds: Mapping[str, float]
    backlog_segments: Mapping[str, int] = field(default_factory=dict)  # empty until the first plan
    backlog_bytes: Mapping[str, int] = field(default_factory=dict)
    last_success: Mapping[str, float] = field(default_factory=dict)  # camera -> Unix time


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
    # What is wedged: ids of cameras whose supervision loop stopped going round, and "storage" when the
    # storage thread died. Empty while healthy (and before the supervisors start: nothing can be stuck).
    stuck: tuple[str, ...] = ()
    config_reload_successful: bool = True  # the last (re)load of the configuration succeeded
    config_reload_success_at: float | None = None  # Unix time of the last successful (re)load
    # The configured limits as they are now (a reload may change them), for the gauges alerts compare with.
    segment_time: float | None = None
    stall_timeout: float | None = None
    transcoding: TranscodeSnapshot | None = None  # None while night transcoding is off
    monotonic_now: float = field(default_factory=time.monotonic)

    @property
    def ready(self) -> bool:
        return all(view.status.state is CameraState.RECORDING for view in self.cameras)

    @property
    def healthy(self) -> bool:
        """Every supervision loop goes round and the storage thread lives (what /-/healthy and the watchdog ask)."""
        return not self.stuck

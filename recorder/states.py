"""Camera supervision states and the read-only snapshot of one camera that everybody else reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from recorder.vocabulary import CameraState

# States in which the camera should be recording: time spent in them is a recording gap. So is time
# `stopped` by retention's stop_recording policy (the supervisor says so); a shutdown is not.
GAP_STATES = frozenset(
    {
        CameraState.STARTING,
        CameraState.BACKOFF,
        CameraState.STALLED,
        CameraState.WAITING_FOR_DEVICE,
        CameraState.FAILED,
        CameraState.STORAGE_ERROR,
    }
)


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

"""What one camera's supervisor publishes: its snapshot (state, counters, progress) and its FFmpeg's cost.

The supervisor thread is the only writer; other threads read `snapshot` and `resources`, immutable objects
replaced whole, so no reader needs a lock or waits on recording.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType

from recorder.camera.ledger import Carried
from recorder.camera.states import CameraStateMachine
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.progress import Progress
from recorder.ffmpeg.run import FFmpegRun
from recorder.state.snapshots import CameraSnapshot, ResourceUsage, recent_restarts


class CameraReport:
    """Folds the state machine, the current FFmpeg run and the finished runs into the published snapshot."""

    def __init__(
        self,
        camera_id: str,
        machine: CameraStateMachine,
        present: bool,
        segment_buckets: tuple[float, ...],
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        carried: Carried | None = None,
    ) -> None:
        """`carried`: what the camera's earlier supervisors counted (camera/ledger.py): every counter goes on
        from there, and so do the last segment, the last error and the restart timeline."""
        self._machine = machine
        self._clock = clock
        self._monotonic = monotonic
        start = carried.snapshot if carried is not None else CameraSnapshot(camera_id, machine.state, present, 0.0)
        # Totals of the finished runs; the current run's own counters are added on each publish.
        self._frames_base, self._dropped_base = start.frames, start.dropped_frames
        self._duplicated_base = start.duplicated_frames
        self._finished_cpu = carried.cpu_seconds if carried is not None else 0.0
        self._discarded: collections.Counter[str] = collections.Counter(start.discarded)
        # Published copies of the counters, rebuilt only when they change (progress publishes once a second).
        self._restarts_seen: dict[str, int] = dict(machine.restarts)
        self._discarded_view = MappingProxyType(dict(self._discarded))
        self.last_error: str | None = start.last_error
        self.last_progress_at: float | None = start.last_progress_at  # Unix time frames last advanced
        self.snapshot = replace(
            start,
            camera=camera_id,
            state=machine.state,
            present=present,
            taken_at=machine.since,
            fps=0.0,
            speed=0.0,
            bitrate_bits_per_second=0.0,
            ffmpeg_pid=None,
            restarts=MappingProxyType(dict(self._restarts_seen)),
            gap_seconds=machine.gap,
            gap_growing=machine.counting_gap,
            # A new segment time brings new bucket bounds; what was observed before stays in count and sum.
            segment_durations=start.segment_durations.rebucketed(segment_buckets),
        )
        self.resources = ResourceUsage(self._finished_cpu, 0)

    def publish(self, present: bool, run: FFmpegRun | None, **changes: object) -> None:
        """Publish a new snapshot: the state machine's view, `run`'s progress so far, and `changes`."""
        machine = self._machine
        progress = run.last_progress if run else None
        now = self._monotonic()
        restarts = self.snapshot.restarts
        recent = self.snapshot.recent_restarts
        if machine.restarts != self._restarts_seen:
            self._restarts_seen = dict(machine.restarts)
            restarts = MappingProxyType(dict(self._restarts_seen))
            recent = recent_restarts(self.snapshot, machine.restarts, self._clock(), self.last_error)
        self.snapshot = replace(
            self.snapshot,
            state=machine.state,
            present=present,
            taken_at=now,
            restarts=restarts,
            discarded=self._discarded_view,
            # The gap of earlier states plus the current one's time so far when it counts.
            gap_seconds=machine.gap_so_far(now),
            gap_growing=machine.counting_gap,
            ffmpeg_pid=run.process.pid if run else None,
            last_error=self.last_error,
            last_progress_at=self.last_progress_at,
            recent_restarts=recent,
            **self._progress_fields(progress, recording=machine.state is CameraState.RECORDING),
            **changes,
        )

    def _progress_fields(self, progress: Progress | None, *, recording: bool) -> dict[str, object]:
        live = progress if progress is not None and recording else None
        return {
            "frames": self._frames_base + (progress.frame if progress else 0),
            "dropped_frames": self._dropped_base + (progress.drop_frames if progress else 0),
            "duplicated_frames": self._duplicated_base + (progress.dup_frames if progress else 0),
            "fps": live.fps if live else 0.0,
            "speed": live.speed if live else 0.0,
            "bitrate_bits_per_second": live.bitrate_bits_per_second if live else 0.0,
        }

    def segment_completed(self, size: int, duration: float) -> dict[str, object]:
        """The snapshot changes a kept segment makes, for the next publish."""
        snap = self.snapshot
        return {
            "segments_completed": snap.segments_completed + 1,
            "written_bytes": snap.written_bytes + size,
            "segment_durations": snap.segment_durations.observe(duration),
            "last_segment_at": self._clock(),
        }

    def discarded(self, reason: str) -> None:
        self._discarded[reason] += 1
        self._discarded_view = MappingProxyType(dict(self._discarded))

    def resources_sampled(self, run_cpu_seconds: float, rss: int) -> None:
        self.resources = ResourceUsage(self._finished_cpu + run_cpu_seconds, rss)

    def run_reaped(self, run: FFmpegRun) -> None:
        """FFmpeg is gone: fold its counters into the camera's totals before the next run starts from zero."""
        self._finished_cpu += run.cpu_seconds
        self.resources = ResourceUsage(self._finished_cpu, 0)
        progress = run.last_progress
        if progress is not None:
            self._frames_base += progress.frame
            self._dropped_base += progress.drop_frames
            self._duplicated_base += progress.dup_frames

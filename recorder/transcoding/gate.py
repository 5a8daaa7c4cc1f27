"""When the transcoder yields to the recorder: outside the window, busy CPU or disk, a camera not
recording, or too little free space. Readings are injected so tests drive every decision.

The window is `run_schedule_start`-`run_schedule_end` in local time; it may cross midnight."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import psutil

from recorder.config import TranscodingConfig
from recorder.domain.vocabulary import TranscodeState

GB = 1_000_000_000


def minutes_of(hhmm: str) -> int:
    """Minutes since midnight of a validated `HH:MM`."""
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_window(now: float, start: str, end: str, *, localtime: type[datetime] = datetime) -> bool:
    """Whether Unix time `now` falls in [start, end) local time; an end before the start crosses midnight.

    Local time is the process's TZ at the moment asked, so a daylight-saving change moves the window
    with the wall clock, as an operator reading "02:00" expects.
    """
    time.tzset()
    local = localtime.fromtimestamp(now)
    minute = local.hour * 60 + local.minute
    opens, closes = minutes_of(start), minutes_of(end)
    if opens < closes:
        return opens <= minute < closes
    return minute >= opens or minute < closes


@dataclass(frozen=True)
class CpuReading:
    """Percentages of CPU time since the previous reading (psutil.cpu_times_percent)."""

    busy: float  # neither idle, nor waiting for I/O, nor niced (the transcoder itself runs niced)
    iowait: float


@dataclass(frozen=True)
class DiskReading:
    used_ratio: float  # 0-1, as retention computes it
    avail_bytes: int
    low_space_warning_ratio: float  # storage.low_space_warning / 100


def psutil_cpu() -> CpuReading:
    """System CPU use since the last call, without the niced time that is the transcoder's own."""
    t = psutil.cpu_times_percent(interval=None)
    iowait = float(getattr(t, "iowait", 0.0))
    busy = 100.0 - t.idle - iowait - float(getattr(t, "nice", 0.0))
    return CpuReading(busy=max(busy, 0.0), iowait=iowait)


class Gate:
    """Decides, from fresh readings, whether transcoding may run now and if not why."""

    def __init__(
        self,
        config: TranscodingConfig,
        *,
        cpu: Callable[[], CpuReading] = psutil_cpu,
        disk: Callable[[], DiskReading | None],
        cameras_recording: Callable[[], Mapping[str, bool]] = dict,
        clock: Callable[[], float] = time.time,
        ignore_window: bool = False,  # `--transcode`: one pass now, whatever the hour
    ) -> None:
        self._config = config
        self._cpu = cpu
        self._disk = disk
        self._cameras_recording = cameras_recording
        self._clock = clock
        self._ignore_window = ignore_window

    def decide(self) -> TranscodeState:
        """RUNNING, or the first reason (in this order) to wait."""
        tc = self._config
        if not self._ignore_window and not in_window(self._clock(), tc.run_schedule_start, tc.run_schedule_end):
            return TranscodeState.PAUSED_OUTSIDE_WINDOW
        if not all(self._cameras_recording().values()):
            return TranscodeState.PAUSED_CAMERA_NOT_RECORDING
        disk = self._disk()
        if disk is None or self.low_space(disk):
            return TranscodeState.PAUSED_LOW_SPACE
        cpu = self._cpu()
        if cpu.busy > tc.max_cpu_percent:
            return TranscodeState.PAUSED_CPU
        if cpu.iowait > tc.max_io_wait:
            return TranscodeState.PAUSED_IO_WAIT
        return TranscodeState.RUNNING

    def low_space(self, disk: DiskReading) -> bool:
        """Above the low-space warning with less than min_free_space_gb free: the temporary file would
        push retention into deleting footage, so the transcoder waits for it to free space first."""
        below_min = disk.avail_bytes < self._config.min_free_space_gb * GB
        return disk.used_ratio > disk.low_space_warning_ratio and below_min

    def room_for(self, size: int) -> bool:
        """Whether a temporary file as large as the original (the worst case) fits now."""
        disk = self._disk()
        return disk is not None and disk.avail_bytes > size

"""The custom collector: every scrape builds fresh metric families from the recorder's snapshots."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import metrics as m
from recorder.buildinfo import build_info
from recorder.snapshots import RecorderSnapshot

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    def snapshot(self) -> RecorderSnapshot: ...


def _family(fam: m.Family, labels: tuple[str, ...] | None = None) -> Metric:
    label_names = list(fam.labels if labels is None else labels)
    if fam.type == "counter":
        return CounterMetricFamily(fam.name, fam.help, labels=label_names)
    if fam.type == "histogram":
        return HistogramMetricFamily(fam.name, fam.help, labels=label_names)
    if fam.type == "info":
        return InfoMetricFamily(fam.name, fam.help, labels=[])
    return GaugeMetricFamily(fam.name, fam.help, labels=label_names)


def _camera_families(snap: RecorderSnapshot) -> Iterator[Metric]:
    state = _family(m.CAMERA_STATE)
    simple: dict[m.Family, Callable[..., float | None]] = {
        m.CAMERA_RECORDING: lambda v: 1.0 if v.status.recording else 0.0,
        m.CAMERA_PRESENT: lambda v: 1.0 if v.status.present else 0.0,
        m.CONFIGURED_FPS: lambda v: v.config.framerate,
        m.ENCODE_FPS: lambda v: v.status.fps,
        m.ENCODE_SPEED: lambda v: v.status.speed,
        m.OUTPUT_RATE: lambda v: v.status.bitrate_bits_per_second / 8,
        m.FRAMES: lambda v: v.status.frames,
        m.DROPPED_FRAMES: lambda v: v.status.dropped_frames,
        m.DUPLICATED_FRAMES: lambda v: v.status.duplicated_frames,
        m.WRITTEN_BYTES: lambda v: v.status.written_bytes,
        m.SEGMENTS_COMPLETED: lambda v: v.status.segments_completed,
        m.LAST_PROGRESS: lambda v: v.status.last_progress_at,
        m.LAST_SEGMENT: lambda v: v.status.last_segment_at,
        m.RECORDING_GAP: lambda v: v.status.gap_seconds_at(snap.monotonic_now),
        m.FFMPEG_CPU: lambda v: v.resources.cpu_seconds,
        m.FFMPEG_RSS: lambda v: v.resources.rss_bytes,
    }
    families = {fam: _family(fam) for fam in simple}
    restarts = _family(m.FFMPEG_RESTARTS)
    discarded = _family(m.SEGMENTS_DISCARDED)
    durations = _family(m.SEGMENT_DURATION)
    for view in snap.cameras:
        cam = view.config.id
        for name in m.CAMERA_STATES:
            state.add_metric([cam, name], 1.0 if view.status.state.value == name else 0.0)
        for fam, read in simple.items():
            value = read(view)
            if value is not None:
                families[fam].add_metric([cam], float(value))
        # Every reason is always present, so rate() and increase() see the first restart.
        for reason in m.RESTART_REASONS:
            restarts.add_metric([cam, reason], float(view.status.restarts.get(reason, 0)))
        for reason in m.DISCARD_REASONS:
            discarded.add_metric([cam, reason], float(view.status.discarded.get(reason, 0)))
        hist = view.status.segment_durations
        buckets = [(_bound(b), float(c)) for b, c in zip((*hist.bounds, float("inf")), hist.counts, strict=True)]
        durations.add_metric([cam], buckets, sum_value=hist.total)
    yield state
    yield from families.values()
    yield restarts
    yield discarded
    yield durations


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


class RecorderCollector(Collector):
    """Reads `source.snapshot()` at scrape time: no disk walk, no FFmpeg, no lock recording waits on."""

    def __init__(
        self,
        source: SnapshotSource,
        *,
        codec_of: Mapping[str, str],
        container: str,
        segment_time: float,
        stall_timeout: float,
        webhook_results: Callable[[], Mapping[str, int]] = dict,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._source = source
        self._codec_of = codec_of
        self._container = container
        self._segment_time = segment_time
        self._stall_timeout = stall_timeout
        self._webhook_results = webhook_results
        self._clock = clock
        # Looked up now (a checkout asks git), so no scrape ever waits on it.
        self._revision = build_info().revision

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: the families depend on the snapshot, so registration does
        # not trigger a scrape.
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self._source.snapshot()
        duration = _family(m.SCRAPE_DURATION)
        success = _family(m.SCRAPE_SUCCESS)
        # SUB_COLLECTORS is the one list of names and their order: each names the method `_<name>` below.
        for name in m.SUB_COLLECTORS:
            part: Callable[[RecorderSnapshot], Iterator[Metric]] = getattr(self, f"_{name}")
            started = self._clock()
            try:
                families = list(part(snap))
            except Exception:
                # One broken part must not take the rest of the scrape down with it.
                log.exception("collector %s failed", name)
                families, ok = [], False
            else:
                ok = True
            duration.add_metric([name], self._clock() - started)
            success.add_metric([name], 1.0 if ok else 0.0)
            yield from families
        yield duration
        yield success

    def _cameras(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        info = _family(m.CAMERA_INFO)
        for view in snap.cameras:
            info.add_metric(
                [],
                {
                    "camera": view.config.id,
                    "name": view.config.name,
                    "source": view.config.source.value,
                    # From the snapshot when it says (it follows a reload), else as configured at start.
                    "codec": view.codec if view.codec is not None else self._codec_of.get(view.config.id, ""),
                    "container": self._container,
                },
            )
        yield info
        yield from _camera_families(snap)
        seg_time = _family(m.SEGMENT_TIME)
        stall = _family(m.STALL_TIMEOUT)
        segment_time = snap.segment_time if snap.segment_time is not None else self._segment_time
        stall_timeout = snap.stall_timeout if snap.stall_timeout is not None else self._stall_timeout
        for view in snap.cameras:
            seg_time.add_metric([view.config.id], float(segment_time))
            stall.add_metric([view.config.id], float(stall_timeout))
        yield seg_time
        yield stall

    def _storage(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        st = snap.storage
        path = st.path
        size = _family(m.FILESYSTEM_SIZE)
        avail = _family(m.FILESYSTEM_AVAIL)
        writable = _family(m.STORAGE_WRITABLE)
        if st.filesystem_size_bytes is not None:
            size.add_metric([path], float(st.filesystem_size_bytes))
            avail.add_metric([path], float(st.filesystem_avail_bytes or 0))
        if st.writable is not None:
            writable.add_metric([path], 1.0 if st.writable else 0.0)
        files = _family(m.RECORDINGS_FILES)
        total = _family(m.RECORDINGS_BYTES)
        oldest = _family(m.OLDEST_RECORDING)
        for cam, acc in st.cameras.items():
            files.add_metric([cam], float(acc.files))
            total.add_metric([cam], float(acc.bytes))
            if acc.oldest_start is not None:
                oldest.add_metric([cam], acc.oldest_start)
        yield from (size, avail, writable, files, total, oldest)

    def _retention(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        st = snap.storage
        path = st.path
        max_age = _family(m.RETENTION_MAX_AGE)
        for cam, acc in st.cameras.items():
            if acc.max_age_seconds is not None:
                max_age.add_metric([path, cam], acc.max_age_seconds)
        threshold = _family(m.RETENTION_THRESHOLD)
        threshold.add_metric([path], st.disk_usage_threshold_ratio)
        low = _family(m.RETENTION_LOW_SPACE)
        low.add_metric([path], st.low_space_warning_ratio)
        runs = _family(m.RETENTION_RUNS)
        for trigger in m.RETENTION_TRIGGERS:
            runs.add_metric([path, trigger], float(st.runs.get(trigger, 0)))
        last_run = _family(m.RETENTION_LAST_RUN)
        if st.last_run_timestamp is not None:
            last_run.add_metric([path], st.last_run_timestamp)
        capacity = _family(m.RETENTION_CAPACITY)
        if st.capacity_seconds is not None:
            capacity.add_metric([path], st.capacity_seconds)
        deleted_files = _family(m.RETENTION_DELETED_FILES)
        deleted_bytes = _family(m.RETENTION_DELETED_BYTES)
        for cam in st.cameras:
            for reason in m.DELETION_REASONS:
                deleted_files.add_metric([cam, reason], float(st.deleted_files.get((cam, reason), 0)))
                deleted_bytes.add_metric([cam, reason], float(st.deleted_bytes.get((cam, reason), 0)))
        min_free_unmet = _family(m.RETENTION_MIN_FREE_UNMET)
        min_free_unmet.add_metric([path], 1.0 if st.min_free_unmet else 0.0)
        yield from (max_age, threshold, low, runs, last_run, capacity, deleted_files, deleted_bytes, min_free_unmet)

    def _transcoding(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        tc = snap.transcoding
        state = _family(m.TRANSCODE_STATE)
        current = tc.state.value if tc is not None else "disabled"
        for name in m.TRANSCODE_STATES:
            state.add_metric([name], 1.0 if name == current else 0.0)
        yield state
        # Off, the families are still described (empty), so dashboards and the golden list see them.
        segments = _family(m.TRANSCODE_SEGMENTS)
        per_camera = {
            fam: _family(fam) for fam in (m.TRANSCODE_INPUT_BYTES, m.TRANSCODE_OUTPUT_BYTES, m.TRANSCODE_SECONDS)
        }
        backlog_segments = _family(m.TRANSCODE_BACKLOG_SEGMENTS)
        backlog_bytes = _family(m.TRANSCODE_BACKLOG_BYTES)
        last_success = _family(m.TRANSCODE_LAST_SUCCESS)
        for cam in tc.cameras if tc is not None else ():
            assert tc is not None
            # Every result is always present, so increase() sees the first failure.
            for result in m.TRANSCODE_RESULTS:
                segments.add_metric([cam, result], float(tc.segments.get((cam, result), 0)))
            per_camera[m.TRANSCODE_INPUT_BYTES].add_metric([cam], float(tc.input_bytes.get(cam, 0)))
            per_camera[m.TRANSCODE_OUTPUT_BYTES].add_metric([cam], float(tc.output_bytes.get(cam, 0)))
            per_camera[m.TRANSCODE_SECONDS].add_metric([cam], float(tc.seconds.get(cam, 0.0)))
            if cam in tc.backlog_segments:
                backlog_segments.add_metric([cam], float(tc.backlog_segments[cam]))
                backlog_bytes.add_metric([cam], float(tc.backlog_bytes.get(cam, 0)))
            if cam in tc.last_success:
                last_success.add_metric([cam], tc.last_success[cam])
        yield segments
        yield from per_camera.values()
        yield from (backlog_segments, backlog_bytes, last_success)

    def _process(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        build = _family(m.BUILD_INFO)
        build.add_metric(
            [],
            {
                "version": snap.version,
                "revision": self._revision,
                "ffmpeg_version": snap.ffmpeg_version,
                "python_version": snap.python_version,
            },
        )
        start = _family(m.START_TIME)
        start.add_metric([], snap.started_at)
        yield build
        yield start
        reload_ok = _family(m.CONFIG_RELOAD_SUCCESSFUL)
        reload_ok.add_metric([], 1.0 if snap.config_reload_successful else 0.0)
        yield reload_ok
        if snap.config_reload_success_at is not None:
            reload_at = _family(m.CONFIG_RELOAD_SUCCESS_TIME)
            reload_at.add_metric([], snap.config_reload_success_at)
            yield reload_at
        if snap.cpu_temperature_celsius is not None:
            temperature = _family(m.CPU_TEMPERATURE)
            temperature.add_metric([], snap.cpu_temperature_celsius)
            yield temperature

    def _events(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        hotplug = _family(m.HOTPLUG_EVENTS)
        for action in m.HOTPLUG_ACTIONS:
            for matched in (True, False):
                count = snap.hotplug_events.get((action, matched), 0)
                hotplug.add_metric([action, "true" if matched else "false"], float(count))
        webhook = _family(m.WEBHOOK_REQUESTS)
        results = self._webhook_results()
        for result in m.WEBHOOK_RESULTS:
            webhook.add_metric([result], float(results.get(result, 0)))
        yield hotplug
        yield webhook

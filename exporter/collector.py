"""The custom collector: every scrape builds fresh metric families from the recorder's snapshots, which
prometheus_client's encoders write (text or OpenMetrics, as the scraper asks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter import metrics as m
from recorder.domain.buildinfo import build_info
from recorder.state.snapshots import CameraStorage, CameraView, RecorderSnapshot, StorageSnapshot

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    def snapshot(self) -> RecorderSnapshot: ...


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


# The per-camera families with one sample per camera, in the order a scrape shows them, and how each
# reads its value from the camera's view and the snapshot's monotonic time (None: no sample).
_PER_CAMERA: tuple[tuple[m.Family, Callable[[CameraView, float], float | None]], ...] = (
    (m.CAMERA_RECORDING, lambda v, now: _flag(v.status.recording)),
    (m.CAMERA_PRESENT, lambda v, now: _flag(v.status.present)),
    (m.CONFIGURED_FPS, lambda v, now: v.config.framerate),
    (m.ENCODE_FPS, lambda v, now: v.status.fps),
    (m.ENCODE_SPEED, lambda v, now: v.status.speed),
    (m.OUTPUT_RATE, lambda v, now: v.status.bitrate_bits_per_second / 8),
    (m.FRAMES, lambda v, now: v.status.frames),
    (m.DROPPED_FRAMES, lambda v, now: v.status.dropped_frames),
    (m.DUPLICATED_FRAMES, lambda v, now: v.status.duplicated_frames),
    (m.WRITTEN_BYTES, lambda v, now: v.status.written_bytes),
    (m.SEGMENTS_COMPLETED, lambda v, now: v.status.segments_completed),
    (m.LAST_PROGRESS, lambda v, now: v.status.last_progress_at),
    (m.LAST_SEGMENT, lambda v, now: v.status.last_segment_at),
    (m.RECORDING_GAP, lambda v, now: v.status.gap_seconds_at(now)),
    (m.FFMPEG_CPU, lambda v, now: v.resources.cpu_seconds),
    (m.FFMPEG_RSS, lambda v, now: v.resources.rss_bytes),
)
# Label pairs kept for this many (camera, word set) before starting over: several times any configuration.
_PAIR_SETS_KEPT = 4096
# Upper bounds' texts kept for this many distinct bucket layouts (one per segment time) before starting over.
_BOUND_LAYOUTS_KEPT = 64


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


class Rows(Metric):
    """One of the recorder's families, filled a row of label values (in the family's label order) at a time:
    prometheus_client's Metric with the very samples its Gauge/Counter/Info/HistogramMetricFamily make, made
    without their per-call checks (the names and label names are exporter/metrics.py's, valid by construction)."""

    def __init__(self, fam: m.Family) -> None:
        super().__init__(fam.name, fam.help, fam.type)
        self._label_names = fam.labels
        self._main = fam.name + {"counter": "_total", "info": "_info"}.get(fam.type, "")
        self._info = fam.type == "info"

    def add(self, label_values: tuple[str, ...], value: float) -> None:
        """A gauge's or counter's sample; for an info family, `value` is ignored (always 1)."""
        labels = dict(zip(self._label_names, label_values, strict=False))
        self.samples.append(Sample(self._main, labels, 1.0 if self._info else value))

    def extend(self, label_values: Sequence[tuple[str, ...]], values: Sequence[float]) -> None:
        """Several samples at once (a camera's over a closed set of reasons)."""
        if len(label_values) != len(values):
            raise ValueError(f"{self.name}: {len(label_values)} label values for {len(values)} values")
        for row, value in zip(label_values, values, strict=True):
            self.add(row, value)

    def add_histogram(
        self, label_values: tuple[str, ...], bounds: tuple[str, ...], counts: Sequence[float], total: float
    ) -> None:
        if len(bounds) != len(counts):
            raise ValueError(f"{self.name}: {len(bounds)} bucket bounds for {len(counts)} counts")
        labels = dict(zip(self._label_names, label_values, strict=False))
        bucket = self.name + "_bucket"
        self.samples.extend(Sample(bucket, {**labels, "le": le}, n) for le, n in zip(bounds, counts, strict=True))
        # As HistogramMetricFamily: no count and sum when a bucket bound is negative.
        if float(bounds[0]) >= 0 and total is not None:
            self.samples.append(Sample(self.name + "_count", labels, counts[-1]))
            self.samples.append(Sample(self.name + "_sum", dict(labels), total))


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
        http_responses: Callable[[], Mapping[str, int]] = dict,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._source = source
        self._codec_of = codec_of
        self._container = container
        self._segment_time = segment_time
        self._stall_timeout = stall_timeout
        self._webhook_results = webhook_results
        self._http_responses = http_responses
        self._clock = clock
        # Looked up now (a checkout asks git), so no scrape ever waits on it.
        self._revision = build_info().revision
        # Kept across scrapes: each histogram's bounds as text, and label value pairs over closed word sets.
        self._bound_texts: dict[tuple[float, ...], tuple[str, ...]] = {}
        self._pairs: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, str], ...]] = {}
        # The recording gap is extrapolated at scrape time while it grows (gap_seconds_at). A scrape that reads
        # the snapshot a camera is just leaving its gap state by counts past the moment the state machine
        # accounts, so the next scrape could read a hair less: the value exposed never goes below the last.
        self._gap_exposed: dict[str, float] = {}
        self._gap_lock = threading.Lock()

    @staticmethod
    def _family(fam: m.Family) -> Rows:
        return Rows(fam)

    def _labelled(self, first: str, words: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """(first, word) for each word: the label values of a camera's samples over a closed set of words,
        made once per camera rather than once per scrape."""
        key = (first, words)
        pairs = self._pairs.get(key)
        if pairs is None:
            if len(self._pairs) >= _PAIR_SETS_KEPT:
                self._pairs.clear()  # cameras renamed by reload after reload
            pairs = self._pairs[key] = tuple((first, word) for word in words)
        return pairs

    def _per_word(self, family: Rows, cam: str, words: tuple[str, ...], counts: Mapping[str, int]) -> None:
        """One sample of `cam` per word, 0 for the words `counts` lacks."""
        family.extend(self._labelled(cam, words), [float(counts.get(word, 0)) for word in words])

    def _bucket_bounds(self, bounds: tuple[float, ...]) -> tuple[str, ...]:
        """The `le` texts of a histogram's bounds, +Inf last, made once per bucket layout. Equal tuples have
        equal texts: the bounds are fractions of a positive segment time, so never the -0.0 that equals 0.0."""
        texts = self._bound_texts.get(bounds)
        if texts is None:
            if len(self._bound_texts) >= _BOUND_LAYOUTS_KEPT:
                self._bound_texts.clear()
            texts = self._bound_texts[bounds] = (*(_bound(b) for b in bounds), "+Inf")
        return texts

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: the families depend on the snapshot, so registration does
        # not trigger a scrape.
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self._source.snapshot()
        duration = self._family(m.SCRAPE_DURATION)
        success = self._family(m.SCRAPE_SUCCESS)
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
            duration.add((name,), self._clock() - started)
            success.add((name,), _flag(ok))
            yield from families
        yield duration
        yield success

    def _cameras(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        info = self._family(m.CAMERA_INFO)
        for view in snap.cameras:
            config = view.config
            # From the snapshot when it says (it follows a reload), else as configured at start.
            codec = view.codec if view.codec is not None else self._codec_of.get(config.id, "")
            info.add((config.id, config.name, config.source.value, codec, self._container), 1.0)  # labels' order
        yield info
        yield from self._camera_families(snap)
        seg_time = self._family(m.SEGMENT_TIME)
        stall = self._family(m.STALL_TIMEOUT)
        segment_time = float(snap.segment_time if snap.segment_time is not None else self._segment_time)
        stall_timeout = float(snap.stall_timeout if snap.stall_timeout is not None else self._stall_timeout)
        for view in snap.cameras:
            camera = (view.config.id,)
            seg_time.add(camera, segment_time)
            stall.add(camera, stall_timeout)
        yield seg_time
        yield stall

    def _camera_families(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        state = self._family(m.CAMERA_STATE)
        simple = [(self._family(fam), read) for fam, read in _PER_CAMERA]
        restarts = self._family(m.FFMPEG_RESTARTS)
        discarded = self._family(m.SEGMENTS_DISCARDED)
        durations = self._family(m.SEGMENT_DURATION)
        now = snap.monotonic_now
        for view in snap.cameras:
            cam = view.config.id
            camera = (cam,)
            status = view.status
            current = status.state.value
            state.extend(self._labelled(cam, m.CAMERA_STATES), [_flag(current == name) for name in m.CAMERA_STATES])
            for family, read in simple:
                value = read(view, now)
                if value is not None:
                    if family.name == m.RECORDING_GAP.name:
                        value = self._never_below_exposed(cam, float(value))
                    family.add(camera, float(value))
            # Every reason is always present, so rate() and increase() see the first restart.
            self._per_word(restarts, cam, m.RESTART_REASONS, status.restarts)
            self._per_word(discarded, cam, m.DISCARD_REASONS, status.discarded)
            hist = status.segment_durations
            counts = [float(c) for c in hist.counts]
            durations.add_histogram(camera, self._bucket_bounds(hist.bounds), counts, hist.total)
        yield state
        yield from (family for family, _ in simple)
        yield restarts
        yield discarded
        yield durations

    def _never_below_exposed(self, camera: str, gap: float) -> float:
        with self._gap_lock:
            exposed = max(gap, self._gap_exposed.get(camera, 0.0))
            self._gap_exposed[camera] = exposed
            return exposed

    def _storage(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        st = snap.storage
        path = (st.path,)
        size = self._family(m.FILESYSTEM_SIZE)
        avail = self._family(m.FILESYSTEM_AVAIL)
        writable = self._family(m.STORAGE_WRITABLE)
        if st.filesystem_size_bytes is not None:
            size.add(path, float(st.filesystem_size_bytes))
            avail.add(path, float(st.filesystem_avail_bytes or 0))
        if st.writable is not None:
            writable.add(path, _flag(st.writable))
        files = self._family(m.RECORDINGS_FILES)
        total = self._family(m.RECORDINGS_BYTES)
        oldest = self._family(m.OLDEST_RECORDING)
        for cam, acc in st.cameras.items():
            files.add((cam,), float(acc.files))
            total.add((cam,), float(acc.bytes))
            if acc.oldest_start is not None:
                oldest.add((cam,), acc.oldest_start)
        yield from (size, avail, writable, files, total, oldest)
        yield from self._orphaned(st)

    def _orphaned(self, st: StorageSnapshot) -> Iterator[Metric]:
        """The orphans' footage: the ORPHANED_CAMERAS_SHOWN holding the most bytes, by name, the rest as `_other`."""
        folders = self._family(m.ORPHANED_FOLDERS)
        folders.add((st.path,), float(len(st.orphans)))
        files = self._family(m.ORPHANED_RECORDINGS_FILES)
        total = self._family(m.ORPHANED_RECORDINGS_BYTES)
        oldest = self._family(m.ORPHANED_OLDEST_RECORDING)
        orphans = st.orphans.values()
        if len(st.orphans) > m.ORPHANED_CAMERAS_SHOWN:
            ranked = sorted(orphans, key=lambda acc: (-acc.bytes, acc.camera))
            shown, rest = ranked[: m.ORPHANED_CAMERAS_SHOWN], ranked[m.ORPHANED_CAMERAS_SHOWN :]
            starts = [acc.oldest_start for acc in rest if acc.oldest_start is not None]
            other = CameraStorage(
                camera=m.ORPHANED_OTHER,
                files=sum(acc.files for acc in rest),
                bytes=sum(acc.bytes for acc in rest),
                oldest_start=min(starts) if starts else None,
                newest_start=None,
                write_rate_bytes_per_second=0.0,
                max_age_seconds=None,
                configured=False,
            )
            orphans = [*sorted(shown, key=lambda acc: acc.camera), other]
        for acc in orphans:
            camera = (acc.camera,)
            files.add(camera, float(acc.files))
            total.add(camera, float(acc.bytes))
            if acc.oldest_start is not None:
                oldest.add(camera, acc.oldest_start)
        yield from (folders, files, total, oldest)

    def _retention(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        st = snap.storage
        path = st.path
        max_age = self._family(m.RETENTION_MAX_AGE)
        for cam, acc in st.cameras.items():
            if acc.max_age_seconds is not None:
                max_age.add((path, cam), acc.max_age_seconds)
        threshold = self._family(m.RETENTION_THRESHOLD)
        threshold.add((path,), st.disk_usage_threshold_ratio)
        low = self._family(m.RETENTION_LOW_SPACE)
        low.add((path,), st.low_space_warning_ratio)
        runs = self._family(m.RETENTION_RUNS)
        for trigger in m.RETENTION_TRIGGERS:
            runs.add((path, trigger), float(st.runs.get(trigger, 0)))
        last_run = self._family(m.RETENTION_LAST_RUN)
        if st.last_run_timestamp is not None:
            last_run.add((path,), st.last_run_timestamp)
        capacity = self._family(m.RETENTION_CAPACITY)
        if st.capacity_seconds is not None:
            capacity.add((path,), st.capacity_seconds)
        deleted_files = self._family(m.RETENTION_DELETED_FILES)
        deleted_bytes = self._family(m.RETENTION_DELETED_BYTES)
        for cam in st.cameras:
            pairs = self._labelled(cam, m.DELETION_REASONS)
            deleted_files.extend(pairs, [float(st.deleted_files.get(key, 0)) for key in pairs])
            deleted_bytes.extend(pairs, [float(st.deleted_bytes.get(key, 0)) for key in pairs])
        min_free_unmet = self._family(m.RETENTION_MIN_FREE_UNMET)
        min_free_unmet.add((path,), _flag(st.min_free_unmet))
        yield from (max_age, threshold, low, runs, last_run, capacity, deleted_files, deleted_bytes, min_free_unmet)
        orphaned_files = self._family(m.RETENTION_ORPHANED_DELETED_FILES)
        orphaned_bytes = self._family(m.RETENTION_ORPHANED_DELETED_BYTES)
        pairs = self._labelled(path, m.DELETION_REASONS)
        orphaned_files.extend(pairs, [float(st.orphaned_deleted_files.get(r, 0)) for r in m.DELETION_REASONS])
        orphaned_bytes.extend(pairs, [float(st.orphaned_deleted_bytes.get(r, 0)) for r in m.DELETION_REASONS])
        yield from (orphaned_files, orphaned_bytes)

    def _transcoding(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        tc = snap.transcoding
        state = self._family(m.TRANSCODE_STATE)
        current = tc.state.value if tc is not None else "disabled"
        for name in m.TRANSCODE_STATES:
            state.add((name,), _flag(name == current))
        yield state
        # Off, the families are still described (empty), so dashboards and the golden list see them.
        segments = self._family(m.TRANSCODE_SEGMENTS)
        input_bytes = self._family(m.TRANSCODE_INPUT_BYTES)
        output_bytes = self._family(m.TRANSCODE_OUTPUT_BYTES)
        seconds = self._family(m.TRANSCODE_SECONDS)
        backlog_segments = self._family(m.TRANSCODE_BACKLOG_SEGMENTS)
        backlog_bytes = self._family(m.TRANSCODE_BACKLOG_BYTES)
        last_success = self._family(m.TRANSCODE_LAST_SUCCESS)
        for cam in tc.cameras if tc is not None else ():
            assert tc is not None
            camera = (cam,)
            # Every result is always present, so increase() sees the first failure.
            pairs = self._labelled(cam, m.TRANSCODE_RESULTS)
            segments.extend(pairs, [float(tc.segments.get(key, 0)) for key in pairs])
            input_bytes.add(camera, float(tc.input_bytes.get(cam, 0)))
            output_bytes.add(camera, float(tc.output_bytes.get(cam, 0)))
            seconds.add(camera, float(tc.seconds.get(cam, 0.0)))
            if cam in tc.backlog_segments:
                backlog_segments.add(camera, float(tc.backlog_segments[cam]))
                backlog_bytes.add(camera, float(tc.backlog_bytes.get(cam, 0)))
            if cam in tc.last_success:
                last_success.add(camera, tc.last_success[cam])
        yield from (segments, input_bytes, output_bytes, seconds, backlog_segments, backlog_bytes, last_success)

    def _process(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        build = self._family(m.BUILD_INFO)
        build.add((snap.version, self._revision, snap.ffmpeg_version, snap.python_version), 1.0)  # labels' order
        start = self._family(m.START_TIME)
        start.add((), snap.started_at)
        yield build
        yield start
        reload_ok = self._family(m.CONFIG_RELOAD_SUCCESSFUL)
        reload_ok.add((), _flag(snap.config_reload_successful))
        yield reload_ok
        if snap.config_reload_success_at is not None:
            reload_at = self._family(m.CONFIG_RELOAD_SUCCESS_TIME)
            reload_at.add((), snap.config_reload_success_at)
            yield reload_at
        if snap.cpu_temperature_celsius is not None:
            temperature = self._family(m.CPU_TEMPERATURE)
            temperature.add((), snap.cpu_temperature_celsius)
            yield temperature

    def _events(self, snap: RecorderSnapshot) -> Iterator[Metric]:
        hotplug = self._family(m.HOTPLUG_EVENTS)
        for action in m.HOTPLUG_ACTIONS:
            for matched in (True, False):
                count = snap.hotplug_events.get((action, matched), 0)
                hotplug.add((action, "true" if matched else "false"), float(count))
        webhook = self._family(m.WEBHOOK_REQUESTS)
        results = self._webhook_results()
        for result in m.WEBHOOK_RESULTS:
            webhook.add((result,), float(results.get(result, 0)))
        http = self._family(m.HTTP_RESPONSES)
        answered = self._http_responses()
        for code in m.HTTP_CODE_CLASSES:
            http.add((code,), float(answered.get(code, 0)))
        yield hotplug
        yield webhook
        yield http

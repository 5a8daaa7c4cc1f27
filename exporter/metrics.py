"""Every metric family the exporter publishes: the one place its names, types, help and labels live.

The table in docs/metrics.md, the alert rules, the dashboards and the tests all read from here
(`../shared/conventions/metrics.md` is the contract this implements).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recorder.domain.vocabulary import (
    CameraState,
    DeletionReason,
    DiscardReason,
    HotplugAction,
    RestartReason,
    RetentionTrigger,
    SourceKind,
    TranscodeResult,
    TranscodeState,
    WebhookResult,
    values,
)

NAMESPACE = "camera_recorder"

MetricType = Literal["gauge", "counter", "histogram", "info", "stateset"]

# Closed label value sets: collectors emit only these, tests and bundle checks import them. Each is
# derived from the recorder's vocabulary, the one place the words are listed.
CAMERA_STATES: tuple[str, ...] = values(CameraState)
RESTART_REASONS: tuple[str, ...] = values(RestartReason)
DISCARD_REASONS: tuple[str, ...] = values(DiscardReason)
DELETION_REASONS: tuple[str, ...] = values(DeletionReason)
RETENTION_TRIGGERS: tuple[str, ...] = values(RetentionTrigger)
HOTPLUG_ACTIONS: tuple[str, ...] = values(HotplugAction)
WEBHOOK_RESULTS: tuple[str, ...] = values(WebhookResult)
HTTP_CODE_CLASSES: tuple[str, ...] = ("1xx", "2xx", "3xx", "4xx", "5xx")
SOURCE_KINDS: tuple[str, ...] = values(SourceKind)
# Night transcoding (recorder/transcoding/): what became of each segment tried, and why the worker waits.
TRANSCODE_RESULTS: tuple[str, ...] = values(TranscodeResult)
TRANSCODE_STATES: tuple[str, ...] = values(TranscodeState)

# Collector names for the scrape's report on itself (node_exporter's scrape_collector_* shape).
SUB_COLLECTORS: tuple[str, ...] = ("cameras", "storage", "retention", "transcoding", "process", "events")


@dataclass(frozen=True)
class Family:
    """One metric family: `name` is the full name without the `_total` suffix of counters."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()

    @property
    def exposed_name(self) -> str:
        """The name a scrape shows for the family's main sample."""
        return f"{self.name}_total" if self.type == "counter" else self.name


def _f(suffix: str, type_: MetricType, help_: str, *labels: str) -> Family:
    return Family(f"{NAMESPACE}_{suffix}", type_, help_, labels)


# Per camera.
CAMERA_INFO = _f("camera", "info", "Configured camera.", "camera", "name", "source", "codec", "container")
CAMERA_STATE = _f("camera_state", "gauge", "1 for the camera's current supervision state.", "camera", "state")
CAMERA_RECORDING = _f("camera_recording", "gauge", "1 while frames are being written, else 0.", "camera")
CAMERA_PRESENT = _f("camera_present", "gauge", "1 if the camera's source is present.", "camera")
CONFIGURED_FPS = _f("configured_fps", "gauge", "Frame rate asked for in the configuration.", "camera")
ENCODE_FPS = _f("encode_fps", "gauge", "Frame rate FFmpeg reports now.", "camera")
ENCODE_SPEED = _f("encode_speed_ratio", "gauge", "FFmpeg's speed, 1.0 being real time.", "camera")
# Renamed from the contract's output_bitrate_bits_per_second: promtool's lint rejects "bits" as a unit
# (base unit bytes), and a clean `promtool check metrics` is required too. Dashboards multiply by 8.
OUTPUT_RATE = _f("output_bytes_per_second", "gauge", "Bytes per second written into the segments now.", "camera")
FRAMES = _f("frames", "counter", "Frames written.", "camera")
DROPPED_FRAMES = _f("dropped_frames", "counter", "Frames FFmpeg dropped.", "camera")
DUPLICATED_FRAMES = _f("duplicated_frames", "counter", "Frames FFmpeg duplicated.", "camera")
WRITTEN_BYTES = _f("written_bytes", "counter", "Bytes written to completed segments.", "camera")
SEGMENTS_COMPLETED = _f("segments_completed", "counter", "Segments closed.", "camera")
SEGMENT_DURATION = _f("segment_duration_seconds", "histogram", "Duration of each completed segment.", "camera")
LAST_PROGRESS = _f("last_progress_timestamp_seconds", "gauge", "Unix time FFmpeg last reported progress.", "camera")
LAST_SEGMENT = _f("last_segment_timestamp_seconds", "gauge", "Unix time the last segment was completed.", "camera")
FFMPEG_RESTARTS = _f("ffmpeg_restarts", "counter", "FFmpeg restarts by reason.", "camera", "reason")
SEGMENTS_DISCARDED = _f(
    "segments_discarded", "counter", "Segments removed because they held no usable video.", "camera", "reason"
)
RECORDING_GAP = _f(
    "recording_gap_seconds",
    "counter",
    "Seconds in which this camera recorded nothing while it should have.",
    "camera",
)
FFMPEG_CPU = _f("ffmpeg_cpu_seconds", "counter", "CPU time of this camera's FFmpeg processes.", "camera")
FFMPEG_RSS = _f("ffmpeg_resident_memory_bytes", "gauge", "Resident memory of this camera's FFmpeg.", "camera")
RECORDINGS_BYTES = _f("recordings_bytes", "gauge", "Bytes of this camera's segments on disk.", "camera")
RECORDINGS_FILES = _f("recordings_files", "gauge", "Number of this camera's segments on disk.", "camera")
OLDEST_RECORDING = _f(
    "oldest_recording_timestamp_seconds",
    "gauge",
    "Start time of the oldest segment kept (the retention horizon).",
    "camera",
)
RETENTION_DELETED_FILES = _f("retention_deleted_files", "counter", "Segments deleted by retention.", "camera", "reason")
RETENTION_DELETED_BYTES = _f("retention_deleted_bytes", "counter", "Bytes deleted by retention.", "camera", "reason")
# Additions to the contract: the configured limits alerts compare against.
SEGMENT_TIME = _f("segment_time_seconds", "gauge", "Configured segment duration.", "camera")
STALL_TIMEOUT = _f(
    "stall_timeout_seconds", "gauge", "Seconds without progress after which FFmpeg is restarted.", "camera"
)

# Footage of cameras not in the configuration (removed or renamed: "orphaned"), in families of their own so
# that nothing about the configured cameras changes meaning, and alerts on those never fire for a camera
# that is gone. Folder names come from the disk, so at most ORPHANED_CAMERAS_SHOWN orphans (those holding
# the most bytes) get a `camera` series; the rest are summed into `camera="_other"` (no camera id starts
# with "_"), so sum() over a family is still the whole. Their deletions are counted by reason only.
ORPHANED_CAMERAS_SHOWN = 20
ORPHANED_OTHER = "_other"
ORPHANED_RECORDINGS_BYTES = _f(
    "orphaned_recordings_bytes", "gauge", "Bytes of segments in the folder of a camera not in the configuration.",
    "camera",
)  # fmt: skip
ORPHANED_RECORDINGS_FILES = _f(
    "orphaned_recordings_files", "gauge", "Number of segments in the folder of a camera not in the configuration.",
    "camera",
)  # fmt: skip
ORPHANED_OLDEST_RECORDING = _f(
    "orphaned_oldest_recording_timestamp_seconds",
    "gauge",
    "Start time of the oldest segment kept of a camera not in the configuration.",
    "camera",
)
ORPHANED_FOLDERS = _f(
    "orphaned_folders", "gauge", "Folders of cameras not in the configuration that hold their segments.", "path"
)
RETENTION_ORPHANED_DELETED_FILES = _f(
    "retention_orphaned_deleted_files",
    "counter",
    "Segments of cameras not in the configuration deleted by retention.",
    "path",
    "reason",
)
RETENTION_ORPHANED_DELETED_BYTES = _f(
    "retention_orphaned_deleted_bytes",
    "counter",
    "Bytes of segments of cameras not in the configuration deleted by retention.",
    "path",
    "reason",
)

# Storage and retention (label `path` = the recordings folder).
FILESYSTEM_SIZE = _f("filesystem_size_bytes", "gauge", "Size of the filesystem holding recordings.", "path")
FILESYSTEM_AVAIL = _f("filesystem_avail_bytes", "gauge", "Bytes available to the recorder there.", "path")
STORAGE_WRITABLE = _f(
    "storage_writable", "gauge", "1 if the last write probe in the recordings folder succeeded.", "path"
)
RETENTION_MAX_AGE = _f("retention_max_age_seconds", "gauge", "Configured maximum age of recordings.", "path", "camera")
RETENTION_THRESHOLD = _f(
    "retention_disk_usage_threshold_ratio",
    "gauge",
    "Disk usage (0-1) at which the oldest segments are deleted.",
    "path",
)
RETENTION_LOW_SPACE = _f(
    "retention_low_space_warning_ratio", "gauge", "Disk usage (0-1) that warns of low space.", "path"
)
RETENTION_RUNS = _f("retention_runs", "counter", "Retention passes by trigger.", "path", "trigger")
RETENTION_LAST_RUN = _f(
    "retention_last_run_timestamp_seconds", "gauge", "When the last retention pass finished.", "path"
)
RETENTION_CAPACITY = _f(
    "retention_capacity_seconds",
    "gauge",
    "Seconds of recording that fit in the space the recorder may use, at the current write rate.",
    "path",
)
RETENTION_MIN_FREE_UNMET = _f(
    "retention_min_free_unmet",
    "gauge",
    "1 while min_free_minutes at the current write rate asks for more space than retention may free "
    "without going below pressure_target; footage is kept.",
    "path",
)

# Night transcoding (label `camera` unless noted).
TRANSCODE_SEGMENTS = _f(
    "transcode_segments", "counter", "Segments the transcoder finished, by result.", "camera", "result"
)
TRANSCODE_INPUT_BYTES = _f("transcode_input_bytes", "counter", "Bytes of segments before transcoding.", "camera")
TRANSCODE_OUTPUT_BYTES = _f("transcode_output_bytes", "counter", "Bytes of the same segments after.", "camera")
TRANSCODE_SECONDS = _f("transcode_seconds", "counter", "Wall time spent transcoding.", "camera")
TRANSCODE_BACKLOG_SEGMENTS = _f(
    "transcode_backlog_segments", "gauge", "Segments old enough and not yet transcoded.", "camera"
)
TRANSCODE_BACKLOG_BYTES = _f("transcode_backlog_bytes", "gauge", "Bytes of those segments.", "camera")
TRANSCODE_STATE = _f("transcode_state", "gauge", "1 for the transcoder's current state.", "state")
TRANSCODE_LAST_SUCCESS = _f(
    "transcode_last_success_timestamp_seconds", "gauge", "Unix time a segment was last transcoded.", "camera"
)

# Process and events.
BUILD_INFO = _f("build", "info", "Build information.", "version", "revision", "ffmpeg_version", "python_version")
START_TIME = _f("start_time_seconds", "gauge", "Unix time the daemon started.")
HOTPLUG_EVENTS = _f("hotplug_events", "counter", "udev events for video devices.", "action", "matched")
WEBHOOK_REQUESTS = _f("alert_webhook_requests", "counter", "Alertmanager webhook requests by result.", "result")
# Every HTTP answer by status class, aiohttp's own for malformed requests included: a rise in 4xx is a
# client sending garbage (or guessing), any 5xx a bug to report.
HTTP_RESPONSES = _f("http_responses", "counter", "HTTP answers sent by the exporter, by status class.", "code")
# Prometheus' own convention (prometheus_config_last_reload_*): set at start, and by each SIGHUP reload.
CONFIG_RELOAD_SUCCESSFUL = _f(
    "config_last_reload_successful", "gauge", "1 if the last configuration (re)load succeeded, else 0."
)
CONFIG_RELOAD_SUCCESS_TIME = _f(
    "config_last_reload_success_timestamp_seconds", "gauge", "Unix time of the last successful configuration load."
)
CPU_TEMPERATURE = _f("cpu_temperature_celsius", "gauge", "Hottest CPU sensor.")
SCRAPE_DURATION = _f(
    "scrape_collector_duration_seconds", "gauge", "Time a sub-collector took in this scrape.", "collector"
)
SCRAPE_SUCCESS = _f("scrape_collector_success", "gauge", "1 if a sub-collector succeeded in this scrape.", "collector")

ALL_FAMILIES: tuple[Family, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Family))

"""The closed sets of words the recorder and the exporter share: states, reasons, triggers, actions, results.

Dependency-free on purpose (only the 3.10 StrEnum shim), so every layer may import it. Members are
strings, so they compare, hash and format as their values; exporter/metrics.py derives its label
tuples from these enums and nothing else lists them again.
"""

from __future__ import annotations

from recorder.domain.compat import StrEnum


class CameraState(StrEnum):
    """Where one camera's supervision stands (the `state` label of camera_recorder_camera_state)."""

    STARTING = "starting"  # FFmpeg launched, no frame written yet
    RECORDING = "recording"  # progress arrives and frames are written
    BACKOFF = "backoff"  # FFmpeg ended; waiting before the next start
    STALLED = "stalled"  # no progress for stall_timeout: being killed
    WAITING_FOR_DEVICE = "waiting_for_device"  # the camera is unplugged; nothing to start
    STOPPED = "stopped"  # not supervised (shutdown, disabled, or recording paused by retention)
    FAILED = "failed"  # cannot be recorded as configured (bad option, permission): retried slowly
    # The recordings folder refuses writes (read-only, permission, I/O error, full beyond what retention
    # can free, a symlinked camera folder): probed about once a second, recording resumes when it works.
    STORAGE_ERROR = "storage_error"


class SourceKind(StrEnum):
    """Where a camera's video comes from (the `source` of camera_recorder_camera_info)."""

    DEVICE = "device"
    URL = "url"
    FILE = "file"
    TEST_PATTERN = "test_pattern"


class RestartReason(StrEnum):
    """Why an FFmpeg run ended and another was started (the `reason` of ffmpeg_restarts_total)."""

    EXITED = "exited"  # clean exit (a file source ran out, an upstream ended the stream)
    CRASHED = "crashed"  # non-zero exit or a signal, or died before its first frame
    STALL = "stall"  # no progress for stall_timeout: killed
    DEVICE_GONE = "device_gone"
    DEVICE_BUSY = "device_busy"
    HOTPLUG = "hotplug"  # udev said the device changed: restarted on purpose
    CONFIG = "config"  # a bad option or a permission (cannot be recorded as configured), or a reload changed it
    DISK_FULL = "disk_full"
    INTERNAL_ERROR = "internal_error"  # the supervisor itself raised
    RESOURCE_EXHAUSTED = "resource_exhausted"  # EMFILE, ENOMEM and friends starting FFmpeg
    CLOCK_STEP = "clock_step"  # the wall clock stepped back: restarted with fresh names, none overwritten


class DiscardReason(StrEnum):
    """Why a finished segment was removed instead of indexed (segments_discarded_total)."""

    EMPTY = "empty"  # 0 bytes or no frame
    UNREADABLE = "unreadable"  # ffprobe could not read it


class DeletionReason(StrEnum):
    """Why retention deleted a segment (retention_deleted_files_total)."""

    MAX_AGE = "max_age"
    DISK_PRESSURE = "disk_pressure"
    ALERT = "alert"


class RetentionTrigger(StrEnum):
    """What started a retention pass (retention_runs_total)."""

    SCHEDULE = "schedule"
    DISK_PRESSURE = "disk_pressure"
    ALERT = "alert"
    MANUAL = "manual"


class AlertAction(StrEnum):
    """What an Alertmanager alert's `action` label may ask retention to do."""

    FREE_SPACE = "free_space"
    ENFORCE_MAX_AGE = "enforce_max_age"


class HotplugAction(StrEnum):
    """The udev actions reported for video devices (hotplug_events_total)."""

    ADD = "add"
    REMOVE = "remove"
    CHANGE = "change"


class WebhookResult(StrEnum):
    """How one webhook request ended; every request is counted under exactly one."""

    ACCEPTED = "accepted"
    IGNORED = "ignored"
    UNAUTHORIZED = "unauthorized"
    INVALID = "invalid"
    TOO_LARGE = "too_large"  # 413
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    DISABLED = "disabled"  # no usable token file, 503
    BUSY = "busy"  # too many bodies in flight at once, 503


class TranscodeResult(StrEnum):
    """What became of one segment the night transcoder tried (transcode_segments_total)."""

    TRANSCODED = "transcoded"
    SKIPPED_SMALL_SAVINGS = "skipped_small_savings"  # the original is kept and never tried again
    FAILED_VERIFICATION = "failed_verification"
    FAILED = "failed"


class TranscodeState(StrEnum):
    """The night transcoder's state: running, or why it waits."""

    RUNNING = "running"
    PAUSED_OUTSIDE_WINDOW = "paused_outside_window"
    PAUSED_CPU = "paused_cpu"
    PAUSED_IO_WAIT = "paused_io_wait"
    PAUSED_CAMERA_NOT_RECORDING = "paused_camera_not_recording"
    PAUSED_LOW_SPACE = "paused_low_space"
    DISABLED = "disabled"


def values(words: type[StrEnum]) -> tuple[str, ...]:
    """The plain string values of an enum of words, in declaration order (a metric's label tuple)."""
    return tuple(str(word.value) for word in words)

"""The configuration's frozen dataclasses and string enums: what the rest of the recorder reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recorder.domain.compat import StrEnum
from recorder.domain.vocabulary import SourceKind


class ConfigError(Exception):
    """An invalid configuration: one line per problem, each naming the key path and the value."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in problems))


class Codec(StrEnum):
    COPY = "copy"
    H264_QSV = "h264_qsv"
    HEVC_QSV = "hevc_qsv"
    H264_VAAPI = "h264_vaapi"
    HEVC_VAAPI = "hevc_vaapi"
    LIBX264 = "libx264"
    LIBX265 = "libx265"


class Container(StrEnum):
    MKV = "mkv"
    MP4 = "mp4"


class BitrateMode(StrEnum):
    VBR = "VBR"
    CBR = "CBR"
    CQP = "CQP"


class ThresholdAction(StrEnum):
    DELETE_OLDEST = "delete_oldest"
    STOP_RECORDING = "stop_recording"


PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
QSV_PRESETS = PRESETS[2:]  # Intel's encoders know veryfast..veryslow only
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Resolution:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class DeviceMatch:
    """Stable identity of a USB camera; any field set must match the udev properties of its node."""

    serial: str | None = None  # udev ID_SERIAL
    id_path: str | None = None  # udev ID_PATH (the USB port)
    usb_id: str | None = None  # "vendor:product", lowercase hex
    by_id: str | None = None  # a /dev/v4l/by-id/ link name or path

    def is_empty(self) -> bool:
        return not (self.serial or self.id_path or self.usb_id or self.by_id)


@dataclass(frozen=True)
class CameraConfig:
    id: str
    name: str
    source: SourceKind
    # Device path, URL or file path; "" for a test pattern or a device found only by `match`.
    location: str
    match: DeviceMatch | None = None
    input_format: str | None = None
    resolution: Resolution | None = None
    framerate: int | None = None
    enabled: bool = True
    cleanup_days: float | None = None  # None: the storage section's value applies


@dataclass(frozen=True)
class EncodingConfig:
    codec: Codec = Codec.COPY
    preset: str = "medium"
    quality: int = 23
    bitrate_mode: BitrateMode = BitrateMode.VBR
    target_bitrate: int = 8000  # kbit/s
    max_bitrate: int = 12000  # kbit/s
    gop_size: int = 120
    ref_frames: int = 3
    lookahead: bool = True
    extra_hw_frames: int = 64


@dataclass(frozen=True)
class RecordingConfig:
    segment_time: int = 1800
    container_format: Container = Container.MKV
    base_directory: Path = Path("/storage/recordings")
    flush_packets: bool = True
    movflags: str | None = None
    align_segments: bool = False  # cut at wall-clock multiples of segment_time


@dataclass(frozen=True)
class StorageConfig:
    cleanup_enabled: bool = True
    cleanup_days: float = 30.0
    disk_usage_threshold: float = 90.0  # percent
    low_space_warning: float = 80.0  # percent
    pressure_target: float | None = None  # percent; None: 5 points below the threshold
    min_free_minutes: float = 60.0
    on_threshold: ThresholdAction = ThresholdAction.DELETE_OLDEST
    check_interval: float = 60.0
    resync_interval: float = 3600.0
    delete_on_alert: bool | None = None  # None: as on_threshold says (delete_oldest yes, stop_recording no)

    @property
    def effective_pressure_target(self) -> float:
        return self.pressure_target if self.pressure_target is not None else max(self.disk_usage_threshold - 5.0, 1.0)

    @property
    def alerts_may_delete(self) -> bool:
        """Whether an Alertmanager webhook's free_space may delete footage: stop_recording promises to keep
        every file the configured max age does not take, so only an explicit `delete_on_alert: true` lets
        such an alert delete under it."""
        if self.delete_on_alert is not None:
            return self.delete_on_alert
        return self.on_threshold is ThresholdAction.DELETE_OLDEST


@dataclass(frozen=True)
class TranscodingConfig:
    """The original's night transcoding: old segments re-encoded in a quiet window (recorder/transcoding/)."""

    enabled: bool = False
    min_age_days: float = 7.0
    run_schedule_start: str = "02:00"  # local time HH:MM the window opens
    run_schedule_end: str = "06:00"  # local time HH:MM it closes; earlier than the start: crosses midnight
    max_cpu_percent: float = 50.0  # system CPU use (niced time excluded) above which it pauses
    max_io_wait: float = 20.0  # percent I/O wait above which it pauses
    codec: Codec = Codec.HEVC_QSV
    preset: str = "slow"
    quality: int = 26
    keep_original_days: float = 1.0  # 0: the original is deleted as soon as its replacement is verified
    min_free_space_gb: float = 50.0
    min_savings_percent: float = 20.0
    verify_quality: bool = True  # SSIM on sampled seconds above recorder.transcoding.verify.SSIM_FLOOR


@dataclass(frozen=True)
class SupervisorConfig:
    stall_timeout: float = 10.0
    backoff_initial: float = 0.25
    backoff_max: float = 30.0
    stable_after: float = 30.0
    stop_timeout: float = 10.0
    presence_check_interval: float = 2.0


@dataclass(frozen=True)
class ExporterConfig:
    listen_address: str = "0.0.0.0:9100"
    instance_names: tuple[str, ...] = ()
    webhook_token_file: Path | None = None
    webhook_max_body_bytes: int = 1 << 20
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_username: str | None = None
    basic_auth_password_file: Path | None = None


@dataclass(frozen=True)
class SystemConfig:
    ffmpeg: str | None = None  # None: jellyfin-ffmpeg, ffmpeg-qsv, then PATH
    ffprobe: str | None = None
    v4l2_ctl: str | None = None
    hw_device: str = "/dev/dri/renderD128"
    udev: bool | None = None  # None: use udev when /run/udev/control exists


@dataclass(frozen=True)
class Config:
    cameras: tuple[CameraConfig, ...]
    encoding: EncodingConfig = EncodingConfig()
    recording: RecordingConfig = RecordingConfig()
    storage: StorageConfig = StorageConfig()
    transcoding: TranscodingConfig = TranscodingConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    exporter: ExporterConfig = ExporterConfig()
    system: SystemConfig = SystemConfig()
    vaapi_driver: str = "iHD"
    log_level: str = "INFO"
    # Things that loaded but deserve the operator's attention, reported once at start.
    warnings: tuple[str, ...] = ()
    source: str | None = None

    @property
    def enabled_cameras(self) -> tuple[CameraConfig, ...]:
        return tuple(c for c in self.cameras if c.enabled)

    def camera(self, camera_id: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(camera_id)

    def max_age_days(self, camera: CameraConfig) -> float | None:
        """The age after which this camera's segments go, or None when age cleanup is off."""
        if not self.storage.cleanup_enabled:
            return None
        return camera.cleanup_days if camera.cleanup_days is not None else self.storage.cleanup_days


# ---------------------------------------------------------------------------------------------
# Validation machinery: a reader walks one mapping, records every problem and never raises midway,

"""Configuration: read once, validated once, into frozen objects; nothing else reads raw dicts."""

from __future__ import annotations

import difflib
import errno
import math
import os
import re
import reprlib
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recorder.compat import StrEnum
from recorder.input_formats import INPUT_FORMAT_NAMES
from recorder.input_limits import MAX_CONFIG_BYTES, MAX_NAME_LENGTH, MAX_SHOWN, MAX_TEXT_LENGTH, MAX_YAML_VALUES
from recorder.vocabulary import SourceKind

DEFAULT_CONFIG_PATH = Path("/etc/camera-recorder/config.yaml")
CONFIG_ENV = "CAMERA_RECORDER_CONFIG"

# Camera ids become folder and file names, so only a conservative character set is accepted.
CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
RESOLUTION_RE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt", "tcp")


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
INPUT_FORMATS = INPUT_FORMAT_NAMES  # recorder/input_formats.py is the table
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

    @property
    def effective_pressure_target(self) -> float:
        return self.pressure_target if self.pressure_target is not None else max(self.disk_usage_threshold - 5.0, 1.0)


TRANSCODE_CODECS = (Codec.HEVC_QSV, Codec.H264_QSV, Codec.HEVC_VAAPI, Codec.H264_VAAPI, Codec.LIBX265, Codec.LIBX264)
SCHEDULE_RE = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


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
# so the operator sees all mistakes of a file at once.

T = TypeVar("T")
_MISSING: Any = object()


_bounded_repr = reprlib.Repr()
_bounded_repr.maxlevel = 2
_bounded_repr.maxstring = _bounded_repr.maxother = _bounded_repr.maxlong = MAX_SHOWN


def _show(value: Any) -> str:
    """A value as an error message quotes it: strings quoted, booleans as YAML writes them, never long."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        if len(value) <= MAX_SHOWN:
            return repr(value)
        quoted = repr(value[:MAX_SHOWN])
        return f"{quoted[:-1]}...{quoted[-1]} ({len(value)} characters)"
    if isinstance(value, int) and value.bit_length() > MAX_SHOWN * 3:  # roughly more than MAX_SHOWN digits
        try:
            digits = len(str(abs(value)))
        except ValueError:  # past Python's 4300-digit limit of str()
            digits = int(value.bit_length() * math.log10(2)) + 1
        return f"a number of {digits} digits"
    if isinstance(value, int | float) or value is None:
        return repr(value)
    # reprlib walks a bounded part of a container however big (or self-referencing) it is.
    text = _bounded_repr.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _show_key(key: Any) -> str:
    """A mapping key as it appears in a key path (cameras.cam1.name), cut short when absurd."""
    text = key if isinstance(key, str) else _show(key)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


class _TooLong(ValueError):
    """A free string over its length limit: reported as such, not as a wrong type."""

    def __init__(self, value: str, limit: int) -> None:
        super().__init__(value)
        self.limit = limit


class _Section:
    def __init__(self, raw: Any, path: str, problems: list[str], allowed: tuple[str, ...]) -> None:
        self.path = path
        self.problems = problems
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.append(f"{path or 'top level'}: expected a mapping, got {_show(raw)}")
            raw = {}
        self.raw: Mapping[str, Any] = raw
        for key in raw:
            if key not in allowed:
                shown = _show_key(key)
                hint = difflib.get_close_matches(shown, allowed, n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                problems.append(f"{self._key(shown)}: unknown key{suffix}")

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.raw and self.raw[key] is not None

    def get(self, key: str, convert: Callable[[Any], T], default: T, expected: str) -> T:
        if not self.has(key):
            return default
        value = self.raw[key]
        try:
            return convert(value)
        except _TooLong as exc:
            self.problems.append(f"{self._key(key)}: expected at most {exc.limit} characters, got {_show(value)}")
            return default
        except (TypeError, ValueError):
            self.problems.append(f"{self._key(key)}: expected {expected}, got {_show(value)}")
            return default

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self._key(key)}: {message}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ValueError(value)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise ValueError(value)
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def _non_negative_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(value)
    return number


def _positive_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(value)
    return number


def _percent(value: Any) -> float:
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    number = _positive_number(value)
    if number > 100:
        raise ValueError(value)
    return number


def _text(value: Any, limit: int = MAX_TEXT_LENGTH) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(value)
    text = str(value).strip()  # ValueError past Python's 4300-digit limit for integers
    if text == "":
        raise ValueError(value)
    if len(text) > limit:
        raise _TooLong(text, limit)
    return text


def _name(value: Any) -> str:
    """A display name: it becomes a label value on every scrape, so it stays short."""
    return _text(value, MAX_NAME_LENGTH)


def _choice(options: tuple[str, ...], *, fold: Callable[[str], str] = str.lower) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _text(value)
        for option in options:
            if fold(option) == fold(text):
                return option
        raise ValueError(value)

    return convert


def _resolution(value: Any) -> Resolution:
    match = RESOLUTION_RE.match(str(value)) if isinstance(value, str) else None
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise ValueError(value)
    return Resolution(int(match[1]), int(match[2]))


def _one_of(options: tuple[str, ...]) -> str:
    return "one of " + ", ".join(options)


# ---------------------------------------------------------------------------------------------
# Sections

_CAMERA_KEYS = (
    "device", "url", "file", "test_pattern", "match", "name", "resolution", "framerate",
    "input_format", "enabled", "cleanup_days",
)  # fmt: skip
_MATCH_KEYS = ("serial", "id_path", "usb_id", "by_id")
_SOURCE_KEYS = ("device", "url", "file", "test_pattern")


def _camera(camera_id: Any, raw: Any, problems: list[str], base_dir: Path | None) -> CameraConfig | None:
    path = f"cameras.{camera_id}"
    # fullmatch: `$` alone also matches before a trailing newline, and "cam1\n" would name a folder.
    if not isinstance(camera_id, str) or not CAMERA_ID_RE.fullmatch(camera_id):
        problems.append(
            f"cameras.{camera_id!r}: camera id must be 1-64 letters, digits, '_' or '-' "
            "(it names a folder), got " + _show(camera_id)
        )
        return None
    sec = _Section(raw, path, problems, _CAMERA_KEYS)
    given = [k for k in _SOURCE_KEYS if sec.has(k) and not (k == "test_pattern" and sec.raw[k] is False)]
    match = _device_match(sec) if sec.has("match") else None
    if not given and match is not None:
        given = ["device"]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        sec.problem("source", f"exactly one of device (or match), url, file, test_pattern is required, got {what}")
        return None
    kind = SourceKind(given[0])
    location = ""
    if kind is SourceKind.DEVICE and sec.has("device"):
        location = sec.get("device", _text, "", "a device path")
        if location and not location.startswith("/"):
            sec.problem("device", f"expected an absolute device path, got {_show(location)}")
    elif kind is SourceKind.URL:
        location = sec.get("url", _text, "", "a URL")
        scheme = location.split("://", 1)[0].lower() if "://" in location else ""
        if location and scheme not in URL_SCHEMES:
            sec.problem("url", f"expected a URL with scheme {_one_of(URL_SCHEMES)}, got {_show(location)}")
    elif kind is SourceKind.FILE:
        location = sec.get("file", _text, "", "a file path")
        if location and base_dir is not None and not Path(location).is_absolute():
            location = str(base_dir / location)
    elif kind is SourceKind.TEST_PATTERN:
        sec.get("test_pattern", _bool, True, "true")
    if match is not None and kind is not SourceKind.DEVICE:
        sec.problem("match", f"only applies to device cameras, this camera is a {kind.value} source")
    resolution = sec.get("resolution", _resolution, None, "WIDTHxHEIGHT such as 2560x1440")
    framerate = sec.get("framerate", _positive_int, None, "a positive integer")
    if kind is SourceKind.TEST_PATTERN:
        resolution = resolution or Resolution(1280, 720)
        framerate = framerate or 30
    return CameraConfig(
        id=camera_id,
        name=sec.get("name", _name, camera_id, "a name"),
        source=kind,
        location=location,
        match=match,
        input_format=sec.get("input_format", _choice(INPUT_FORMATS), None, _one_of(INPUT_FORMATS)),
        resolution=resolution,
        framerate=framerate,
        enabled=sec.get("enabled", _bool, True, "true or false"),
        cleanup_days=sec.get("cleanup_days", _positive_number, None, "a positive number of days"),
    )


def _device_match(camera: _Section) -> DeviceMatch | None:
    sec = _Section(camera.raw["match"], camera._key("match"), camera.problems, _MATCH_KEYS)
    usb_id = sec.get("usb_id", _text, None, "vendor:product such as 046d:085e")
    if usb_id is not None:
        usb_id = usb_id.lower()
        if not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", usb_id):
            sec.problem("usb_id", f"expected vendor:product such as 046d:085e, got {_show(usb_id)}")
    result = DeviceMatch(
        serial=sec.get("serial", _text, None, "a udev ID_SERIAL"),
        id_path=sec.get("id_path", _text, None, "a udev ID_PATH"),
        usb_id=usb_id,
        by_id=sec.get("by_id", _text, None, "a /dev/v4l/by-id link"),
    )
    if result.is_empty():
        camera.problem("match", "needs at least one of " + ", ".join(_MATCH_KEYS))
        return None
    return result


def _encoding(raw: Any, problems: list[str]) -> EncodingConfig:
    keys = (
        "codec", "preset", "quality", "bitrate_mode", "target_bitrate", "max_bitrate", "gop_size",
        "ref_frames", "lookahead", "extra_hw_frames",
    )  # fmt: skip
    sec = _Section(raw, "encoding", problems, keys)
    d = EncodingConfig()
    codecs = tuple(c.value for c in Codec)
    modes = tuple(m.value for m in BitrateMode)
    enc = EncodingConfig(
        codec=Codec(sec.get("codec", _choice(codecs), d.codec.value, _one_of(codecs))),
        preset=sec.get("preset", _choice(PRESETS), d.preset, _one_of(PRESETS)),
        quality=sec.get("quality", _positive_int, d.quality, "a positive integer (18-32 is usual)"),
        bitrate_mode=BitrateMode(
            sec.get("bitrate_mode", _choice(modes, fold=str.upper), d.bitrate_mode.value, _one_of(modes))
        ),
        target_bitrate=sec.get("target_bitrate", _positive_int, d.target_bitrate, "a positive integer (kbit/s)"),
        max_bitrate=sec.get("max_bitrate", _positive_int, d.max_bitrate, "a positive integer (kbit/s)"),
        gop_size=sec.get("gop_size", _positive_int, d.gop_size, "a positive integer"),
        ref_frames=sec.get("ref_frames", _positive_int, d.ref_frames, "a positive integer"),
        lookahead=sec.get("lookahead", _bool, d.lookahead, "true or false"),
        extra_hw_frames=sec.get("extra_hw_frames", _non_negative_int, d.extra_hw_frames, "an integer >= 0"),
    )
    if enc.codec in (Codec.H264_QSV, Codec.HEVC_QSV) and enc.preset not in QSV_PRESETS:
        sec.problem("preset", f"{enc.codec.value} accepts {_one_of(QSV_PRESETS)}, got {_show(enc.preset)}")
    if enc.max_bitrate < enc.target_bitrate:
        sec.problem("max_bitrate", f"must be >= target_bitrate ({enc.target_bitrate}), got {enc.max_bitrate}")
    return enc


# Folders whose contents belong to the system: retention deletes inside <base>/<camera>/, and a camera id
# such as "bin" or "etc" would make that a system folder.
SYSTEM_FOLDERS = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
        "/run", "/sbin", "/sys", "/usr", "/var", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/var/lib",
        "/var/log",
    }
)  # fmt: skip


def _refused_base_directory(base: str) -> str | None:
    """Why `base` may not hold recordings (the filesystem root or a system folder), or None."""
    normal = os.path.normpath(base) if base.startswith("/") else None
    if normal is None:
        return None
    normal = "/" + normal.lstrip("/")  # normpath keeps a leading "//"
    if normal in SYSTEM_FOLDERS:
        return f"must be a folder of its own, not the system folder {_show(normal)}, got {_show(base)}"
    return None


def _recording(raw: Any, problems: list[str], warnings: list[str]) -> RecordingConfig:
    keys = ("segment_time", "container_format", "base_directory", "flush_packets", "movflags", "align_segments")
    sec = _Section(raw, "recording", problems, keys)
    d = RecordingConfig()
    containers = tuple(c.value for c in Container)
    base = sec.get("base_directory", _text, str(d.base_directory), "a folder path")
    refused = _refused_base_directory(base)
    if refused:
        sec.problem("base_directory", refused)
    rec = RecordingConfig(
        segment_time=sec.get("segment_time", _positive_int, d.segment_time, "a positive integer (seconds)"),
        container_format=Container(
            sec.get("container_format", _choice(containers), d.container_format.value, _one_of(containers))
        ),
        base_directory=Path(base),
        flush_packets=sec.get("flush_packets", _bool, d.flush_packets, "true or false"),
        movflags=sec.get("movflags", _text, None, "movflags such as +frag_keyframe"),
        align_segments=sec.get("align_segments", _bool, d.align_segments, "true or false"),
    )
    if rec.movflags and "faststart" in rec.movflags:
        warnings.append(
            "recording.movflags: 'faststart' is ignored: MP4 segments are always written fragmented "
            "so that a crash loses at most about one second"
        )
    return rec


def _storage(raw: Any, problems: list[str]) -> StorageConfig:
    keys = (
        "cleanup_enabled", "cleanup_days", "disk_usage_threshold", "low_space_warning", "pressure_target",
        "min_free_minutes", "on_threshold", "check_interval", "resync_interval",
    )  # fmt: skip
    sec = _Section(raw, "storage", problems, keys)
    d = StorageConfig()
    actions = tuple(a.value for a in ThresholdAction)
    pct = "a percentage between 0 and 100"
    threshold = sec.get("disk_usage_threshold", _percent, d.disk_usage_threshold, pct)
    st = StorageConfig(
        cleanup_enabled=sec.get("cleanup_enabled", _bool, d.cleanup_enabled, "true or false"),
        cleanup_days=sec.get("cleanup_days", _positive_number, d.cleanup_days, "a positive number of days"),
        disk_usage_threshold=threshold,
        # A lowered threshold pulls the default warning down with it rather than contradict it.
        low_space_warning=sec.get("low_space_warning", _percent, min(d.low_space_warning, threshold), pct),
        pressure_target=sec.get("pressure_target", _percent, None, pct),
        # 0 switches the time-based wish off; the threshold alone then decides.
        min_free_minutes=sec.get(
            "min_free_minutes", _non_negative_number, d.min_free_minutes, "a number of minutes >= 0 (0: off)"
        ),
        on_threshold=ThresholdAction(sec.get("on_threshold", _choice(actions), d.on_threshold.value, _one_of(actions))),
        check_interval=sec.get("check_interval", _positive_number, d.check_interval, "a positive number (seconds)"),
        resync_interval=sec.get("resync_interval", _positive_number, d.resync_interval, "a positive number (seconds)"),
    )
    if st.low_space_warning > st.disk_usage_threshold:
        sec.problem(
            "low_space_warning",
            f"must not exceed disk_usage_threshold ({st.disk_usage_threshold:g}), got {st.low_space_warning:g}",
        )
    if st.effective_pressure_target >= st.disk_usage_threshold:
        sec.problem(
            "pressure_target",
            f"must be below disk_usage_threshold ({st.disk_usage_threshold:g}), got {st.effective_pressure_target:g}",
        )
    return st


_TRANSCODING_KEYS = (
    "enabled", "min_age_days", "run_schedule_start", "run_schedule_end", "max_cpu_percent", "max_io_wait",
    "codec", "preset", "quality", "keep_original_days", "min_free_space_gb", "min_savings_percent",
    "verify_quality",
)  # fmt: skip


def _schedule_time(value: Any) -> str:
    # YAML 1.1 reads an unquoted 22:30 as the sexagesimal integer 1350 (minutes); 02:00 stays a string.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    text = value if isinstance(value, str) else ""
    match = SCHEDULE_RE.match(text)
    if not match:
        raise ValueError(value)
    return f"{int(match[1]):02d}:{match[2]}"


def _transcoding(raw: Any, problems: list[str]) -> TranscodingConfig:
    sec = _Section(raw, "transcoding", problems, _TRANSCODING_KEYS)
    d = TranscodingConfig()
    codecs = tuple(c.value for c in TRANSCODE_CODECS)
    pct = "a percentage between 0 and 100"
    hhmm = "a local time HH:MM such as '02:00'"
    tc = TranscodingConfig(
        enabled=sec.get("enabled", _bool, d.enabled, "true or false"),
        min_age_days=sec.get("min_age_days", _non_negative_number, d.min_age_days, "a number of days >= 0"),
        run_schedule_start=sec.get("run_schedule_start", _schedule_time, d.run_schedule_start, hhmm),
        run_schedule_end=sec.get("run_schedule_end", _schedule_time, d.run_schedule_end, hhmm),
        max_cpu_percent=sec.get("max_cpu_percent", _percent, d.max_cpu_percent, pct),
        max_io_wait=sec.get("max_io_wait", _percent, d.max_io_wait, pct),
        codec=Codec(sec.get("codec", _choice(codecs), d.codec.value, _one_of(codecs))),
        preset=sec.get("preset", _choice(PRESETS), d.preset, _one_of(PRESETS)),
        quality=sec.get("quality", _positive_int, d.quality, "a positive integer (18-32 is usual)"),
        keep_original_days=sec.get(
            "keep_original_days",
            _non_negative_number,
            d.keep_original_days,
            "a number of days >= 0 (0: delete at once)",
        ),
        min_free_space_gb=sec.get(
            "min_free_space_gb", _non_negative_number, d.min_free_space_gb, "a number of GB >= 0"
        ),
        min_savings_percent=sec.get("min_savings_percent", _non_negative_number, d.min_savings_percent, pct),
        verify_quality=sec.get("verify_quality", _bool, d.verify_quality, "true or false"),
    )
    if tc.min_savings_percent >= 100:
        sec.problem("min_savings_percent", f"expected {pct} (below 100), got {tc.min_savings_percent:g}")
    if tc.codec in (Codec.H264_QSV, Codec.HEVC_QSV) and tc.preset not in QSV_PRESETS:
        sec.problem("preset", f"{tc.codec.value} accepts {_one_of(QSV_PRESETS)}, got {_show(tc.preset)}")
    if tc.run_schedule_start == tc.run_schedule_end:
        sec.problem(
            "run_schedule_end",
            f"must differ from run_schedule_start ({tc.run_schedule_start}): the window would be empty",
        )
    return tc


def _supervisor(raw: Any, problems: list[str]) -> SupervisorConfig:
    keys = (
        "stall_timeout", "backoff_initial", "backoff_max", "stable_after", "stop_timeout",
        "presence_check_interval",
    )  # fmt: skip
    sec = _Section(raw, "supervisor", problems, keys)
    d = SupervisorConfig()
    secs = "a positive number (seconds)"
    sup = SupervisorConfig(
        stall_timeout=sec.get("stall_timeout", _positive_number, d.stall_timeout, secs),
        backoff_initial=sec.get("backoff_initial", _positive_number, d.backoff_initial, secs),
        backoff_max=sec.get("backoff_max", _positive_number, d.backoff_max, secs),
        stable_after=sec.get("stable_after", _positive_number, d.stable_after, secs),
        stop_timeout=sec.get("stop_timeout", _positive_number, d.stop_timeout, secs),
        presence_check_interval=sec.get("presence_check_interval", _positive_number, d.presence_check_interval, secs),
    )
    if sup.backoff_max < sup.backoff_initial:
        sec.problem("backoff_max", f"must be >= backoff_initial ({sup.backoff_initial:g}), got {sup.backoff_max:g}")
    return sup


def _listen_address(value: Any) -> str:
    text = _text(value)
    _host, sep, port = text.rpartition(":")
    # Port 0 asks the kernel for a free port (tests, benchmarks).
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(value)
    return text


def valid_listen_address(text: str) -> bool:
    """HOST:PORT as exporter.listen_address and --listen-address take it."""
    try:
        _listen_address(text)
    except ValueError:
        return False
    return True


def _exporter(raw: Any, problems: list[str], base_dir: Path | None) -> ExporterConfig:
    keys = (
        "listen_address", "instance_names", "webhook_token_file", "webhook_max_body_bytes", "tls_cert_file",
        "tls_key_file", "basic_auth_username", "basic_auth_password_file",
    )  # fmt: skip
    sec = _Section(raw, "exporter", problems, keys)
    d = ExporterConfig()

    def a_path(value: Any) -> Path:
        p = Path(_text(value))
        return p if p.is_absolute() or base_dir is None else base_dir / p

    def names(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError(value)
        return tuple(_text(v) for v in value)

    exp = ExporterConfig(
        listen_address=sec.get("listen_address", _listen_address, d.listen_address, "HOST:PORT such as 0.0.0.0:9100"),
        instance_names=sec.get("instance_names", names, (), "a list of instance names"),
        webhook_token_file=sec.get("webhook_token_file", a_path, None, "a file path"),
        webhook_max_body_bytes=sec.get(
            "webhook_max_body_bytes", _positive_int, d.webhook_max_body_bytes, "a positive integer (bytes)"
        ),
        tls_cert_file=sec.get("tls_cert_file", a_path, None, "a file path"),
        tls_key_file=sec.get("tls_key_file", a_path, None, "a file path"),
        basic_auth_username=sec.get("basic_auth_username", _text, None, "a user name"),
        basic_auth_password_file=sec.get("basic_auth_password_file", a_path, None, "a file path"),
    )
    if (exp.tls_cert_file is None) != (exp.tls_key_file is None):
        sec.problem("tls_cert_file", "tls_cert_file and tls_key_file go together; only one is set")
    if (exp.basic_auth_username is None) != (exp.basic_auth_password_file is None):
        sec.problem("basic_auth_username", "basic_auth_username and basic_auth_password_file go together")
    return exp


def _system(raw: Any, problems: list[str]) -> SystemConfig:
    sec = _Section(raw, "system", problems, ("ffmpeg", "ffprobe", "v4l2_ctl", "hw_device", "udev"))
    d = SystemConfig()
    return SystemConfig(
        ffmpeg=sec.get("ffmpeg", _text, None, "a program path"),
        ffprobe=sec.get("ffprobe", _text, None, "a program path"),
        v4l2_ctl=sec.get("v4l2_ctl", _text, None, "a program path"),
        hw_device=sec.get("hw_device", _text, d.hw_device, "a device path such as /dev/dri/renderD128"),
        udev=sec.get("udev", _bool, None, "true or false"),
    )


_TOP_KEYS = (
    "cameras", "encoding", "recording", "storage", "transcoding", "supervisor", "exporter", "system",
    "vaapi_driver", "log_level", "web_port", "web_host",
)  # fmt: skip


_DEPRECATED_WEB_KEYS = ("tls_cert_file", "tls_key_file", "basic_auth_username", "basic_auth_password_file")


def parse_config(raw: Any, source: str | None = None, base_dir: Path | None = None) -> Config:
    """Validate a raw mapping (from YAML or the legacy converter) into a Config, or raise ConfigError."""
    problems: list[str] = []
    warnings: list[str] = []
    top = _Section(raw, "", problems, _TOP_KEYS)
    cameras: list[CameraConfig] = []
    cams_raw = top.raw.get("cameras")
    if not isinstance(cams_raw, Mapping) or not cams_raw:
        problems.append(f"cameras: expected a mapping of camera id to camera, got {_show(cams_raw)}")
    else:
        for camera_id, cam_raw in cams_raw.items():
            cam = _camera(camera_id, cam_raw, problems, base_dir)
            if cam is not None:
                cameras.append(cam)
        if cameras and not any(c.enabled for c in cameras):
            warnings.append("cameras: every camera is disabled; nothing will be recorded")
    for key in ("web_port", "web_host"):
        if key in top.raw:
            warnings.append(f"{key}: the web interface is gone; the status page is served on exporter.listen_address")
    exporter_raw = top.raw.get("exporter")
    deprecated = [k for k in _DEPRECATED_WEB_KEYS if isinstance(exporter_raw, Mapping) and k in exporter_raw]
    if deprecated:
        warnings.append(f"exporter.{'/'.join(deprecated)}: deprecated; use --web.config.file (exporter-toolkit format)")
    for location, cams in _duplicates(cameras):
        problems.append(f"cameras: {' and '.join(cams)} record the same source {location!r}")
    config = Config(
        cameras=tuple(cameras),
        encoding=_encoding(top.raw.get("encoding"), problems),
        recording=_recording(top.raw.get("recording"), problems, warnings),
        storage=_storage(top.raw.get("storage"), problems),
        transcoding=_transcoding(top.raw.get("transcoding"), problems),
        supervisor=_supervisor(top.raw.get("supervisor"), problems),
        exporter=_exporter(top.raw.get("exporter"), problems, base_dir),
        system=_system(top.raw.get("system"), problems),
        vaapi_driver=top.get("vaapi_driver", _text, "iHD", "a VA-API driver name such as iHD"),
        log_level=top.get("log_level", _choice(LOG_LEVELS, fold=str.upper), "INFO", _one_of(LOG_LEVELS)),
        warnings=tuple(warnings),
        source=source,
    )
    if problems:
        raise ConfigError(problems, source)
    return config


def _duplicates(cameras: list[CameraConfig]) -> Iterator[tuple[str, list[str]]]:
    seen: dict[str, list[str]] = {}
    for cam in cameras:
        if cam.location and cam.source is not SourceKind.FILE:
            seen.setdefault(cam.location, []).append(cam.id)
    for location, ids in seen.items():
        if len(ids) > 1:
            yield location, ids


def resolve_config_path(cli_path: str | None) -> Path:
    """The -c flag wins, then $CAMERA_RECORDER_CONFIG, then /etc/camera-recorder/config.yaml."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


class _RefusedYaml(yaml.MarkedYAMLError):
    """Well-formed YAML the config reader refuses: duplicate keys, aliases that expand too far."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_VALUES values, or that contains itself.

    Each distinct node is visited once (sizes memoized), so an alias bomb is refused in microseconds,
    without ever building, walking or printing its expansion.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()  # nodes whose children are being sized: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in _children(node))
            if size[id(node)] > MAX_YAML_VALUES:
                raise _RefusedYaml(
                    None, None,
                    f"anchors and aliases expand to more than {MAX_YAML_VALUES} values; refused (an alias bomb?)",
                    node.start_mark,
                )  # fmt: skip
            continue
        if id(node) in size:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _RefusedYaml(None, None, "an alias refers to a value that contains it; refused", child.start_mark)
            if id(child) not in size:
                stack.append((child, False))


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus what turns a config into a trap: duplicate keys and alias bombs."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Before SafeConstructor merges `<<:` keys in: a merged key may be overridden, a repeated one may not.
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_line.get(key)
                except TypeError:
                    continue  # unhashable: SafeConstructor reports it
                line = key_node.start_mark.line + 1
                if earlier is not None:
                    raise _RefusedYaml(
                        None, None, f"duplicate key {_show_key(key)!r} (first defined on line {earlier})",
                        key_node.start_mark,
                    )  # fmt: skip
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_config_bytes(path: Path) -> bytes:
    """The file's bytes; ConfigError naming the reason when it cannot be read as a config file."""

    def refuse(reason: str) -> ConfigError:
        return ConfigError([f"cannot read config: {reason}"], str(path))

    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise refuse(os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise refuse("not a regular file (a device, FIFO or socket)")
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_CONFIG_BYTES:
                raise refuse(f"larger than {MAX_CONFIG_BYTES} bytes; a config is a few kB")
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _decode_config(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"], str(path)
        ) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError([f"line {line}: a NUL byte: this is a binary file, not a config"], str(path))
    return text.removeprefix("\ufeff")  # a byte-order mark some editors write


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def load_raw(path: Path) -> Any:
    """The raw mapping of a YAML or legacy bash config file, or ConfigError if it cannot be read.

    Every failure is one line naming the file: unreadable, not a regular file, too big, not UTF-8, binary,
    invalid YAML, a duplicate key, aliases expanding too far, nesting too deep.
    """
    from recorder import legacy

    text = _decode_config(path, _read_config_bytes(path))
    if legacy.looks_legacy(path, text):
        raw, unsupported = legacy.legacy_to_raw(text, source=str(path))
        return raw, [f"{key}: no equivalent in camera-recorder; ignored" for key in unsupported]
    try:
        return yaml.load(text, Loader=_ConfigLoader), []  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        kind = "" if isinstance(exc, _RefusedYaml) else "invalid YAML: "
        raise ConfigError([f"{where}{kind}{_clip(problem)}"], str(path)) from None
    except RecursionError:
        raise ConfigError(["invalid YAML: nested too deeply"], str(path)) from None
    except ValueError as exc:
        # A value YAML's own constructors refuse: a date such as 2024-13-45, an integer of 5000 digits
        # (whose wording changes between Python versions, so it gets ours).
        problem = str(exc)
        if "integer string conversion" in problem:
            problem = "an integer with too many digits"
        raise ConfigError([f"invalid YAML: a value cannot be read: {_clip(problem)}"], str(path)) from None


def load_config(path: Path) -> Config:
    """Read, validate and return the configuration at `path` (YAML or legacy camera-mapping.conf)."""
    raw, notes = load_raw(path)
    config = parse_config(raw, source=str(path), base_dir=path.parent)
    if notes:
        config = Config(**{**config.__dict__, "warnings": (*notes, *config.warnings)})
    return config

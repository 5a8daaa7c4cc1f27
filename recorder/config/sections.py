"""Per-section parsers: a raw mapping validated into the frozen Config, every problem reported at once."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from recorder.config.fields import (
    CAMERA_ID_RE,
    URL_SCHEMES,
    _bool,
    _choice,
    _name,
    _non_negative_int,
    _non_negative_number,
    _one_of,
    _percent,
    _positive_int,
    _positive_number,
    _resolution,
    _Section,
    _show,
    _text,
)
from recorder.config.model import (
    LOG_LEVELS,
    PRESETS,
    QSV_PRESETS,
    BitrateMode,
    CameraConfig,
    Codec,
    Config,
    ConfigError,
    Container,
    DeviceMatch,
    EncodingConfig,
    ExporterConfig,
    RecordingConfig,
    Resolution,
    StorageConfig,
    SupervisorConfig,
    SystemConfig,
    ThresholdAction,
    TranscodingConfig,
)
from recorder.domain.input_formats import INPUT_FORMAT_NAMES
from recorder.domain.vocabulary import SourceKind

TRANSCODE_CODECS = (Codec.HEVC_QSV, Codec.H264_QSV, Codec.HEVC_VAAPI, Codec.H264_VAAPI, Codec.LIBX265, Codec.LIBX264)
SCHEDULE_RE = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


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
        input_format=sec.get("input_format", _choice(INPUT_FORMAT_NAMES), None, _one_of(INPUT_FORMAT_NAMES)),
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
        "min_free_minutes", "on_threshold", "check_interval", "resync_interval", "delete_on_alert",
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
        delete_on_alert=sec.get("delete_on_alert", _bool, None, "true or false"),
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

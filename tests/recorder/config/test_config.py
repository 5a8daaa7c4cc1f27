"""Configuration: the original YAML keeps its meaning, defaults, one exact line per problem, the example."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from recorder.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
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
    SourceKind,
    StorageConfig,
    SupervisorConfig,
    SystemConfig,
    ThresholdAction,
    TranscodingConfig,
    load_config,
    parse_config,
    resolve_config_path,
)
from recorder.config import fields as config_fields
from recorder.config import sections as config_sections

REPO = Path(__file__).resolve().parents[3]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLE = REPO / "config.yaml.example"

CAMERA_ID_RULE = "camera id must be 1-64 letters, digits, '_' or '-' (it names a folder)"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    return info.value.problems


def one_camera(**sections: Any) -> dict[str, Any]:
    return {"cameras": {"cam1": {"device": "/dev/video0"}}, **sections}


# ---------------------------------------------------------------------------------------------
# The original rewrite's YAML


def test_original_rewrite_yaml_keeps_its_meaning() -> None:
    """Every key of the rewrite's config.yaml.example means here what it meant there."""
    cfg = load_config(CONFIGS / "original-rewrite.yaml")
    assert cfg.cameras == (
        CameraConfig(
            id="cam1", name="Camera 1 - Front", source=SourceKind.DEVICE, location="/dev/video-usb1-video0",
            input_format="h264", resolution=Resolution(2560, 1440), framerate=60, enabled=True,
        ),
        CameraConfig(
            id="cam2", name="Camera 2 - Back", source=SourceKind.DEVICE, location="/dev/video-usb2-video0",
            input_format="mjpeg", resolution=Resolution(2560, 1440), framerate=30, enabled=False,
        ),
    )  # fmt: skip
    assert cfg.encoding == EncodingConfig(
        codec=Codec.HEVC_QSV, preset="veryfast", quality=25, bitrate_mode=BitrateMode.VBR, target_bitrate=10000,
        max_bitrate=15000, gop_size=120, ref_frames=4, lookahead=True, extra_hw_frames=32,
    )  # fmt: skip
    assert cfg.recording == RecordingConfig(
        segment_time=1800, container_format=Container.MP4, base_directory=Path("/storage/recordings"),
        flush_packets=True, movflags="+faststart+frag_keyframe",
    )  # fmt: skip
    assert cfg.storage == StorageConfig(
        cleanup_enabled=True, cleanup_days=14.0, disk_usage_threshold=85.0, low_space_warning=75.0
    )
    assert cfg.transcoding == TranscodingConfig(
        enabled=False, min_age_days=7, run_schedule_start="02:00", run_schedule_end="06:00", max_cpu_percent=50,
        max_io_wait=20, codec=Codec.HEVC_QSV, preset="slow", quality=26, keep_original_days=1,
        min_free_space_gb=50, min_savings_percent=20, verify_quality=True,
    )  # fmt: skip
    assert cfg.vaapi_driver == "iHD"
    assert cfg.log_level == "DEBUG"
    assert cfg.enabled_cameras == (cfg.camera("cam1"),)
    # The keys that no longer do anything load, each with a warning rather than silence.
    assert set(cfg.warnings) == {
        "web_port: the web interface is gone; the status page is served on exporter.listen_address",
        "web_host: the web interface is gone; the status page is served on exporter.listen_address",
        "recording.movflags: 'faststart' is ignored: MP4 segments are always written fragmented so that a crash "
        "loses at most about one second",
    }
    assert len(cfg.warnings) == 3


def test_warnings_for_web_keys_and_none_for_transcoding_now_built() -> None:
    # Issue 15 built night transcoding: enabling it no longer warns "not built yet".
    cfg = load_config(CONFIGS / "warnings.yaml")
    assert set(cfg.warnings) == {
        "web_port: the web interface is gone; the status page is served on exporter.listen_address",
        "web_host: the web interface is gone; the status page is served on exporter.listen_address",
    }
    assert len(cfg.warnings) == 2
    assert cfg.transcoding.enabled is True


def test_every_camera_disabled_warns() -> None:
    cfg = parse_config({"cameras": {"cam1": {"device": "/dev/video0", "enabled": False}}})
    assert cfg.warnings == ("cameras: every camera is disabled; nothing will be recorded",)
    assert cfg.enabled_cameras == ()


# ---------------------------------------------------------------------------------------------
# Defaults


def test_defaults_of_a_minimal_config() -> None:
    cfg = load_config(CONFIGS / "minimal.yaml")
    assert cfg.cameras == (CameraConfig(id="cam1", name="cam1", source=SourceKind.DEVICE, location="/dev/video0"),)
    cam = cfg.cameras[0]
    assert (cam.match, cam.input_format, cam.resolution, cam.framerate, cam.enabled, cam.cleanup_days) == (
        None, None, None, None, True, None,
    )  # fmt: skip
    e = cfg.encoding
    assert (e.codec, e.preset, e.quality, e.bitrate_mode) == (Codec.COPY, "medium", 23, BitrateMode.VBR)
    assert (e.target_bitrate, e.max_bitrate, e.gop_size, e.ref_frames) == (8000, 12000, 120, 3)
    assert (e.lookahead, e.extra_hw_frames) == (True, 64)
    r = cfg.recording
    assert (r.segment_time, r.container_format, r.base_directory) == (1800, Container.MKV, Path("/storage/recordings"))
    assert (r.flush_packets, r.movflags, r.align_segments) == (True, None, False)
    s = cfg.storage
    assert (s.cleanup_enabled, s.cleanup_days, s.disk_usage_threshold, s.low_space_warning) == (True, 30, 90, 80)
    assert (s.pressure_target, s.effective_pressure_target, s.min_free_minutes) == (None, 85, 60)
    assert (s.on_threshold, s.check_interval, s.resync_interval) == (ThresholdAction.DELETE_OLDEST, 60, 3600)
    assert cfg.transcoding == TranscodingConfig()
    t = cfg.transcoding
    assert (t.enabled, t.min_age_days, t.run_schedule_start, t.run_schedule_end) == (False, 7, "02:00", "06:00")
    assert (t.max_cpu_percent, t.max_io_wait, t.codec, t.preset, t.quality) == (50, 20, Codec.HEVC_QSV, "slow", 26)
    assert (t.keep_original_days, t.min_free_space_gb, t.min_savings_percent, t.verify_quality) == (1, 50, 20, True)
    v = cfg.supervisor
    assert (v.stall_timeout, v.backoff_initial, v.backoff_max, v.stable_after) == (10, 0.25, 30, 30)
    assert (v.stop_timeout, v.presence_check_interval) == (10, 2)
    x = cfg.exporter
    assert (x.listen_address, x.instance_names, x.webhook_token_file, x.webhook_max_body_bytes) == (
        "0.0.0.0:9100", (), None, 1 << 20,
    )  # fmt: skip
    assert (x.tls_cert_file, x.tls_key_file, x.basic_auth_username, x.basic_auth_password_file) == (None,) * 4
    y = cfg.system
    assert (y.ffmpeg, y.ffprobe, y.v4l2_ctl, y.hw_device, y.udev) == (None, None, None, "/dev/dri/renderD128", None)
    assert (cfg.vaapi_driver, cfg.log_level, cfg.warnings) == ("iHD", "INFO", ())
    assert cfg.source == str(CONFIGS / "minimal.yaml")
    assert cfg.max_age_days(cam) == 30


def test_test_pattern_defaults_and_per_camera_retention() -> None:
    cfg = parse_config(
        {"cameras": {"demo": {"test_pattern": True}, "door": {"device": "/dev/video0", "cleanup_days": 2.5}}}
    )
    demo, door = cfg.cameras
    assert (demo.source, demo.location, demo.resolution, demo.framerate) == (
        SourceKind.TEST_PATTERN, "", Resolution(1280, 720), 30,
    )  # fmt: skip
    assert (cfg.max_age_days(demo), cfg.max_age_days(door)) == (30, 2.5)
    off = parse_config({"cameras": {"door": {"device": "/dev/video0"}}, "storage": {"cleanup_enabled": False}})
    assert off.max_age_days(off.cameras[0]) is None


def test_values_are_normalised() -> None:
    cfg = parse_config(
        {
            "cameras": {
                "cam1": {
                    "device": "/dev/video0",
                    "input_format": "MJPEG",
                    "resolution": " 1920 X 1080 ",
                    "framerate": "30",
                },
                "cam2": {"match": {"usb_id": "046D:085E"}},
                "cam3": {"file": "clips/sample.mkv"},
            },
            "encoding": {"codec": "HEVC_QSV", "bitrate_mode": "cbr", "preset": "Slow"},
            "recording": {"container_format": "MP4", "flush_packets": "no"},
            "storage": {"disk_usage_threshold": "95%", "low_space_warning": "85"},
            "exporter": {"instance_names": "recorder.lan:9100", "webhook_token_file": "secrets/token"},
            "log_level": "debug",
        },
        base_dir=Path("/etc/camera-recorder"),
    )
    cam1, cam2, cam3 = cfg.cameras
    assert (cam1.input_format, cam1.resolution, cam1.framerate) == ("mjpeg", Resolution(1920, 1080), 30)
    assert (cam2.source, cam2.location, cam2.match) == (SourceKind.DEVICE, "", DeviceMatch(usb_id="046d:085e"))
    assert cam3.location == "/etc/camera-recorder/clips/sample.mkv"  # relative to the config file's folder
    assert (cfg.encoding.codec, cfg.encoding.bitrate_mode, cfg.encoding.preset) == (
        Codec.HEVC_QSV, BitrateMode.CBR, "slow",
    )  # fmt: skip
    assert (cfg.recording.container_format, cfg.recording.flush_packets) == (Container.MP4, False)
    assert (cfg.storage.disk_usage_threshold, cfg.storage.low_space_warning) == (95, 85)
    assert cfg.exporter.instance_names == ("recorder.lan:9100",)
    assert cfg.exporter.webhook_token_file == Path("/etc/camera-recorder/secrets/token")
    assert cfg.log_level == "DEBUG"


def test_config_is_frozen() -> None:
    cfg = load_config(CONFIGS / "minimal.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.log_level = "DEBUG"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cameras[0].location = "/dev/video1"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# One file per failure mode, each giving its one exact line

FAILURES: dict[str, str] = {
    "bad-framerate.yaml": "cameras.cam1.framerate: expected a positive integer, got 'sixty'",
    "unknown-camera-key.yaml": "cameras.cam1.framrate: unknown key (did you mean 'framerate'?)",
    "unknown-section.yaml": "recordings: unknown key (did you mean 'recording'?)",
    "unknown-key-no-hint.yaml": "encoding.turbo: unknown key",
    "unknown-match-key.yaml": "cameras.cam1.match.serial_number: unknown key (did you mean 'serial'?)",
    "unknown-transcoding-key.yaml": "transcoding.max_cpu: unknown key (did you mean 'max_cpu_percent'?)",
    "bad-transcoding-codec.yaml": (
        "transcoding.codec: expected one of hevc_qsv, h264_qsv, hevc_vaapi, h264_vaapi, libx265, libx264, got 'copy'"
    ),
    "bad-transcoding-schedule.yaml": (
        "transcoding.run_schedule_start: expected a local time HH:MM such as '02:00', got '25:00'"
    ),
    "bad-transcoding-cpu.yaml": "transcoding.max_cpu_percent: expected a percentage between 0 and 100, got 150",
    "bad-transcoding-io-wait.yaml": "transcoding.max_io_wait: expected a percentage between 0 and 100, got 'high'",
    "bad-transcoding-min-age.yaml": "transcoding.min_age_days: expected a number of days >= 0, got -1",
    "bad-transcoding-quality.yaml": "transcoding.quality: expected a positive integer (18-32 is usual), got 0",
    "bad-transcoding-keep-original.yaml": (
        "transcoding.keep_original_days: expected a number of days >= 0 (0: delete at once), got 'forever'"
    ),
    "bad-transcoding-free-space.yaml": "transcoding.min_free_space_gb: expected a number of GB >= 0, got 'lots'",
    "bad-transcoding-savings.yaml": (
        "transcoding.min_savings_percent: expected a percentage between 0 and 100 (below 100), got 100"
    ),
    "bad-transcoding-verify.yaml": "transcoding.verify_quality: expected true or false, got 'maybe'",
    "bad-transcoding-enabled.yaml": "transcoding.enabled: expected true or false, got 'sometimes'",
    "bad-transcoding-qsv-preset.yaml": (
        "transcoding.preset: hevc_qsv accepts one of veryfast, faster, fast, medium, slow, slower, veryslow, "
        "got 'ultrafast'"
    ),
    "transcoding-empty-window.yaml": (
        "transcoding.run_schedule_end: must differ from run_schedule_start (02:00): the window would be empty"
    ),
    "camera-id-dotdot.yaml": f"cameras.'../x': {CAMERA_ID_RULE}, got '../x'",
    "camera-id-slash.yaml": f"cameras.'a/b': {CAMERA_ID_RULE}, got 'a/b'",
    "camera-id-empty.yaml": f"cameras.'': {CAMERA_ID_RULE}, got ''",
    "no-source.yaml": (
        "cameras.cam1.source: exactly one of device (or match), url, file, test_pattern is required, got none"
    ),
    "two-sources.yaml": (
        "cameras.cam1.source: exactly one of device (or match), url, file, test_pattern is required, got device and url"
    ),
    "test-pattern-false-only.yaml": (
        "cameras.cam1.source: exactly one of device (or match), url, file, test_pattern is required, got none"
    ),
    "bad-test-pattern.yaml": "cameras.cam1.test_pattern: expected true, got 'sometimes'",
    "match-on-url.yaml": "cameras.cam1.match: only applies to device cameras, this camera is a url source",
    "empty-match.yaml": "cameras.cam1.match: needs at least one of serial, id_path, usb_id, by_id",
    "bad-usb-id.yaml": "cameras.cam1.match.usb_id: expected vendor:product such as 046d:085e, got '46d:85e'",
    "relative-device.yaml": "cameras.cam1.device: expected an absolute device path, got 'video0'",
    "empty-device.yaml": "cameras.cam1.device: expected a device path, got ''",
    "bad-url-scheme.yaml": (
        "cameras.cam1.url: expected a URL with scheme one of rtsp, rtsps, rtmp, http, https, udp, srt, tcp, "
        "got 'ftp://nas/cam.mp4'"
    ),
    "bad-resolution.yaml": "cameras.cam1.resolution: expected WIDTHxHEIGHT such as 2560x1440, got '2560*1440'",
    "bad-input-format.yaml": (
        "cameras.cam1.input_format: expected one of h264, hevc, mjpeg, yuyv, nv12, rgb24, gray, got 'h265'"
    ),
    "bad-enabled.yaml": "cameras.cam1.enabled: expected true or false, got 'maybe'",
    "bad-camera-cleanup-days.yaml": "cameras.cam1.cleanup_days: expected a positive number of days, got 0",
    "duplicate-source.yaml": "cameras: cam1 and cam2 record the same source '/dev/video0'",
    "no-cameras.yaml": "cameras: expected a mapping of camera id to camera, got None",
    "empty-cameras.yaml": "cameras: expected a mapping of camera id to camera, got {}",
    "section-not-mapping.yaml": "encoding: expected a mapping, got 'fast'",
    "bad-codec.yaml": (
        "encoding.codec: expected one of copy, h264_qsv, hevc_qsv, h264_vaapi, hevc_vaapi, libx264, libx265, "
        "got 'h265_qsv'"
    ),
    "bad-preset.yaml": (
        "encoding.preset: expected one of ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, "
        "veryslow, got 'turbo'"
    ),
    "bad-bitrate-mode.yaml": "encoding.bitrate_mode: expected one of VBR, CBR, CQP, got 'ABR'",
    "max-below-target.yaml": "encoding.max_bitrate: must be >= target_bitrate (8000), got 4000",
    "bad-extra-hw-frames.yaml": "encoding.extra_hw_frames: expected an integer >= 0, got -1",
    "bad-container.yaml": "recording.container_format: expected one of mkv, mp4, got 'avi'",
    "bad-segment-time.yaml": "recording.segment_time: expected a positive integer (seconds), got -5",
    "bad-threshold.yaml": "storage.disk_usage_threshold: expected a percentage between 0 and 100, got 120",
    "warning-above-threshold.yaml": "storage.low_space_warning: must not exceed disk_usage_threshold (85), got 90",
    "pressure-target-above-threshold.yaml": "storage.pressure_target: must be below disk_usage_threshold (90), got 95",
    "bad-on-threshold.yaml": "storage.on_threshold: expected one of delete_oldest, stop_recording, got 'panic'",
    "backoff-max-below-initial.yaml": "supervisor.backoff_max: must be >= backoff_initial (5), got 1",
    "bad-stall-timeout.yaml": "supervisor.stall_timeout: expected a positive number (seconds), got 'ten'",
    "bad-listen-address.yaml": "exporter.listen_address: expected HOST:PORT such as 0.0.0.0:9100, got 9100",
    "tls-cert-without-key.yaml": "exporter.tls_cert_file: tls_cert_file and tls_key_file go together; only one is set",
    "basic-auth-without-password.yaml": (
        "exporter.basic_auth_username: basic_auth_username and basic_auth_password_file go together"
    ),
    "bad-udev.yaml": "system.udev: expected true or false, got 'sometimes'",
    "bad-log-level.yaml": "log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'",
    "invalid-yaml.yaml": "line 5: invalid YAML: expected <block end>, but found '<block mapping start>'",
    # Hostile or mistaken input: one short line each, found without expanding, decoding or printing it all.
    "alias-bomb.yaml": "line 6: anchors and aliases expand to more than 10000 values; refused (an alias bomb?)",
    "recursive-alias.yaml": "line 2: an alias refers to a value that contains it; refused",
    "duplicate-camera.yaml": "line 7: duplicate key 'cam1' (first defined on line 3)",
    "duplicate-key.yaml": "line 6: duplicate key 'framerate' (first defined on line 4)",
    "not-utf8.yaml": "line 5: not UTF-8 text (byte 0xe9); save the file as UTF-8",
    "binary.yaml": "line 1: not UTF-8 text (byte 0x89); save the file as UTF-8",
    "nul-bytes.yaml": "line 3: a NUL byte: this is a binary file, not a config",
    "long-name.yaml": (
        f"cameras.cam1.name: expected at most 128 characters, got '{('Front door ' * 8)[:80]}...' (219 characters)"
    ),
    "long-value.yaml": (
        f"cameras.cam1.framerate: expected a positive integer, got '{'sixty' * 16}...' (2000 characters)"
    ),
    "long-unknown-key.yaml": f"cameras.cam1.{'x' * 80}... (5000 characters): unknown key",
    "long-path.yaml": (
        f"cameras.cam1.device: expected at most 4096 characters, got '/dev/{'v' * 75}...' (5005 characters)"
    ),
    "bad-date.yaml": "invalid YAML: a value cannot be read: month must be in 1..12",
    "huge-integer.yaml": "invalid YAML: a value cannot be read: an integer with too many digits",
    "deep-nesting.yaml": "invalid YAML: nested too deeply",
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failure_mode_gives_its_one_line(name: str) -> None:
    path = CONFIGS / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [FAILURES[name]]
    assert str(info.value) == f"{path}: {FAILURES[name]}"  # what the operator reads: file, key, value


def test_every_failure_file_is_covered() -> None:
    """Each file in tests/configs is a failure mode above or a valid config used by a test."""
    valid_or_bug = {
        "original-rewrite.yaml", "warnings.yaml", "minimal.yaml", "several-problems.yaml", "modern.yaml",
        "legacy-roundtrip.yaml", "top-level-list.yaml", "qsv-ultrafast.yaml", "threshold-below-default-warning.yaml",
        "merge-keys.yaml",
    }  # fmt: skip
    yaml_files = {p.name for p in CONFIGS.glob("*.yaml")}
    assert yaml_files == set(FAILURES) | valid_or_bug


def test_several_problems_are_all_reported_in_file_order() -> None:
    path = CONFIGS / "several-problems.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    expected = [
        "cameras.cam1.resolutoin: unknown key (did you mean 'resolution'?)",
        "cameras.cam1.framerate: expected a positive integer, got 'sixty'",
        f"cameras.'../x': {CAMERA_ID_RULE}, got '../x'",
        "encoding.codec: expected one of copy, h264_qsv, hevc_qsv, h264_vaapi, hevc_vaapi, libx264, libx265, "
        "got 'h265'",
        "recording.segment_time: expected a positive integer (seconds), got 0",
        "log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'",
    ]
    assert info.value.problems == expected
    assert str(info.value).splitlines() == [f"{path}: {line}" for line in expected]


# ---------------------------------------------------------------------------------------------
# Camera ids and sources


@pytest.mark.parametrize("camera_id", ["../x", "a/b", "", ".hidden", "-x", "cam 1", "a" * 65, "kamera-ü"])
def test_unsafe_camera_ids_are_rejected(camera_id: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": {camera_id: {"device": "/dev/video0"}}})
    assert info.value.problems == [f"cameras.{camera_id!r}: {CAMERA_ID_RULE}, got {camera_id!r}"]


def test_a_numeric_camera_id_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_load("cameras:\n  1:\n    device: /dev/video0\n"))
    assert info.value.problems == [f"cameras.1: {CAMERA_ID_RULE}, got 1"]


@pytest.mark.parametrize("camera_id", ["cam1", "Front-Door", "yard_2", "a" * 64, "0"])
def test_safe_camera_ids_are_accepted(camera_id: str) -> None:
    assert parse_config({"cameras": {camera_id: {"device": "/dev/video0"}}}).cameras[0].id == camera_id


@pytest.mark.parametrize(
    ("camera", "got"),
    [
        ({"name": "x"}, "none"),
        ({"device": "/dev/video0", "url": "rtsp://cam/x"}, "device and url"),
        ({"device": "/dev/video0", "file": "/x.mkv", "test_pattern": True}, "device and file and test_pattern"),
        ({"url": "rtsp://cam/x", "file": "/x.mkv"}, "url and file"),
    ],
)
def test_exactly_one_source(camera: dict[str, Any], got: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"cameras": {"cam1": camera}})
    assert info.value.problems == [
        f"cameras.cam1.source: exactly one of device (or match), url, file, test_pattern is required, got {got}"
    ]


@pytest.mark.parametrize(
    ("camera", "kind", "location"),
    [
        ({"device": "/dev/video0"}, SourceKind.DEVICE, "/dev/video0"),
        ({"device": "/dev/video0", "test_pattern": False}, SourceKind.DEVICE, "/dev/video0"),
        ({"url": "rtsp://cam/x"}, SourceKind.URL, "rtsp://cam/x"),
        ({"file": "/srv/x.mkv"}, SourceKind.FILE, "/srv/x.mkv"),
        ({"test_pattern": True}, SourceKind.TEST_PATTERN, ""),
        ({"match": {"serial": "ABC"}}, SourceKind.DEVICE, ""),
        (
            {"device": "/dev/video0", "match": {"id_path": "pci-0000:00:14.0-usb-0:2:1.0"}},
            SourceKind.DEVICE,
            "/dev/video0",
        ),
    ],
)
def test_each_source_kind(camera: dict[str, Any], kind: SourceKind, location: str) -> None:
    cam = parse_config({"cameras": {"cam1": camera}}).cameras[0]
    assert (cam.source, cam.location) == (kind, location)


def test_two_files_may_replay_the_same_clip() -> None:
    cfg = parse_config({"cameras": {"a": {"file": "/srv/x.mkv"}, "b": {"file": "/srv/x.mkv"}}})
    assert [c.location for c in cfg.cameras] == ["/srv/x.mkv", "/srv/x.mkv"]


# ---------------------------------------------------------------------------------------------
# Files: missing, unreadable, not YAML


def test_missing_file_is_one_clean_line(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of(path) == ["cannot read config: No such file or directory"]


def test_a_directory_is_one_clean_line(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == ["cannot read config: Is a directory"]


def test_invalid_yaml_is_one_clean_line_naming_the_line() -> None:
    problems = problems_of(CONFIGS / "invalid-yaml.yaml")
    assert len(problems) == 1 and problems[0].startswith("line 5: invalid YAML: ")


def test_empty_file_is_missing_cameras(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert problems_of(path) == ["cameras: expected a mapping of camera id to camera, got None"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    assert problems_of(path) == ["cannot read config: not a regular file (a device, FIFO or socket)"]


def test_a_device_is_refused_without_reading_it() -> None:
    assert problems_of(Path("/dev/zero")) == ["cannot read config: not a regular file (a device, FIFO or socket)"]


def test_a_dangling_symlink_is_one_clean_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.symlink_to(tmp_path / "gone.yaml")
    assert problems_of(path) == ["cannot read config: No such file or directory"]


def test_a_file_too_big_to_be_a_config_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("cameras:\n  cam1:\n    device: /dev/video0\n" + "# padding\n" * 120_000)
    assert problems_of(path) == ["cannot read config: larger than 1048576 bytes; a config is a few kB"]


def test_merge_keys_share_settings_and_may_be_overridden() -> None:
    cfg = load_config(CONFIGS / "merge-keys.yaml")
    first, second = cfg.cameras
    assert (first.framerate, second.framerate) == (30, 15)
    assert (second.location, second.resolution, second.input_format) == ("/dev/video2", Resolution(1920, 1080), "mjpeg")


def test_a_byte_order_mark_is_not_part_of_the_first_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (CONFIGS / "minimal.yaml").read_bytes())
    assert load_config(path).cameras[0].location == "/dev/video0"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("legacy-not-utf8.conf", "line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
        ("legacy-expansion-bomb.conf", "line 8: B6: longer than 4096 characters (after expansion)"),
        (
            "legacy-long-line.conf",
            f"line 2: not a KEY=value assignment: '{('garbage ' * 10)[:80]}...' (7999 characters)",
        ),
    ],
)
def test_hostile_legacy_files_give_one_short_line(name: str, problem: str) -> None:
    assert problems_of(CONFIGS / name) == [problem]


def test_names_and_free_strings_have_length_limits() -> None:
    at_limit = parse_config({"cameras": {"cam1": {"device": "/dev/video0", "name": "n" * 128}}})
    assert at_limit.cameras[0].name == "n" * 128
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "cameras": {"cam1": {"device": "/dev/video0", "name": "n" * 5_000_000}},
                "vaapi_driver": "d" * 4097,
            }
        )
    assert info.value.problems == [
        f"cameras.cam1.name: expected at most 128 characters, got '{'n' * 80}...' (5000000 characters)",
        f"vaapi_driver: expected at most 4096 characters, got '{'d' * 80}...' (4097 characters)",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("short", "'short'"),
        (True, "true"),
        (None, "None"),
        (12.5, "12.5"),
        (10**100, "a number of 101 digits"),
        # Past the digits Python's str() accepts (so pytest needs an id for it).
        pytest.param(10**5000, "a number of 5001 digits", id="5001-digits"),
        ({"a": 1}, "{'a': 1}"),
        (list(range(10**6)), "[0, 1, 2, 3, 4, 5, ...]"),
    ],
)
def test_a_value_in_a_message_is_at_most_about_80_characters(value: object, shown: str) -> None:
    text = config_fields._show(value)
    assert text == shown and len(text) <= 100


def test_a_huge_nested_value_is_shown_short() -> None:
    nested: list[object] = ["x" * 1000] * 100
    for _ in range(20):
        nested = [nested] * 100
    assert len(config_fields._show(nested)) <= 80


# ---------------------------------------------------------------------------------------------
# Where the config is read from


def test_flag_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "/from/env.yaml")
    assert resolve_config_path("/from/flag.yaml") == Path("/from/flag.yaml")


def test_environment_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "/from/env.yaml")
    assert resolve_config_path(None) == Path("/from/env.yaml")


@pytest.mark.parametrize("env", [None, ""])
def test_default_location(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv(CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(CONFIG_ENV, env)
    assert resolve_config_path(None) == DEFAULT_CONFIG_PATH == Path("/etc/camera-recorder/config.yaml")


# ---------------------------------------------------------------------------------------------
# The keys the parser accepts, read from recorder/config/sections.py itself


def accepted_keys() -> dict[str, frozenset[str]]:
    """Section path -> keys, from every `_Section(raw, path, problems, allowed)` call in config/sections.py."""
    tree = ast.parse(Path(config_sections.__file__).read_text(encoding="utf-8"))

    def assignments(node: ast.AST) -> dict[str, ast.expr]:
        return {
            target.id: assign.value
            for assign in ast.walk(node)
            if isinstance(assign, ast.Assign)
            for target in assign.targets
            if isinstance(target, ast.Name)
        }

    module = assignments(tree)
    by_function = {"_camera": "cameras.<id>", "_device_match": "cameras.<id>.match"}
    found: dict[str, frozenset[str]] = {}
    for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        local = assignments(func)
        for call in ast.walk(func):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "_Section"):
                continue
            path, allowed = call.args[1], call.args[3]
            if isinstance(allowed, ast.Name):
                allowed = local.get(allowed.id) or module[allowed.id]
            section = path.value if isinstance(path, ast.Constant) else by_function[func.name]
            found[section] = frozenset(ast.literal_eval(allowed))
    return found


SECTIONS = ("encoding", "recording", "storage", "transcoding", "supervisor", "exporter", "system")


def test_key_discovery_finds_every_section() -> None:
    keys = accepted_keys()
    assert set(keys) == {"", "cameras.<id>", "cameras.<id>.match", *SECTIONS}
    assert keys[""] == frozenset(config_sections._TOP_KEYS)
    assert keys["cameras.<id>"] == frozenset(config_sections._CAMERA_KEYS)
    assert keys["cameras.<id>.match"] == frozenset(config_sections._MATCH_KEYS)
    assert keys["transcoding"] == frozenset(config_sections._TRANSCODING_KEYS)
    # Every typed field is configurable, under its own name.
    typed = {
        "encoding": EncodingConfig, "recording": RecordingConfig, "storage": StorageConfig,
        "supervisor": SupervisorConfig, "exporter": ExporterConfig, "system": SystemConfig,
    }  # fmt: skip
    for section, cls in typed.items():
        assert keys[section] == {f.name for f in dataclasses.fields(cls)}, section
    assert keys["cameras.<id>.match"] == {f.name for f in dataclasses.fields(DeviceMatch)}


def test_discovered_keys_are_exactly_the_accepted_ones() -> None:
    """Cross-check against the parser: each discovered key is accepted, a near miss is not."""
    keys = accepted_keys()

    def unknown(raw: dict[str, Any]) -> list[str]:
        try:
            parse_config(raw)
        except ConfigError as exc:
            return [p for p in exc.problems if "unknown key" in p]
        return []

    for section in SECTIONS:
        for key in keys[section]:
            assert unknown(one_camera(**{section: {key: None}})) == [], f"{section}.{key}"
        assert unknown(one_camera(**{section: {"zz_not_a_key": 1}})) == [f"{section}.zz_not_a_key: unknown key"]
    for key in keys["cameras.<id>"]:
        assert unknown({"cameras": {"cam1": {"device": "/dev/video0", key: None}}}) == [], key
    for key in keys["cameras.<id>.match"]:
        assert unknown({"cameras": {"cam1": {"match": {key: "x", "serial": "y"}}}}) == [], key
    for key in keys[""] - {"cameras"}:
        assert unknown(one_camera(**{key: None})) == [], key


# ---------------------------------------------------------------------------------------------
# config.yaml.example

# A commented-out key line, "# key: value" at any indentation; prose comments start with a capital.
_COMMENTED_KEY = re.compile(r"^([ \t]*)# ([ \t]*[a-z][a-z0-9_]*:(?:[ \t]|$).*)$", re.MULTILINE)


def uncommented_example() -> str:
    """The example with every commented-out key line made active."""
    return _COMMENTED_KEY.sub(r"\1\2", EXAMPLE.read_text(encoding="utf-8"))


def test_example_loads_cleanly_and_its_active_values_are_the_defaults() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.warnings == ()
    assert [(c.id, c.source) for c in cfg.cameras] == [("cam1", SourceKind.DEVICE), ("cam2", SourceKind.DEVICE)]
    cam1, cam2 = cfg.cameras
    assert cam1.location.startswith("/dev/v4l/by-id/")
    assert (cam1.resolution, cam1.framerate, cam1.input_format) == (Resolution(2560, 1440), 60, "h264")
    assert cam2.location == "" and cam2.match is not None
    # Every active key outside the cameras shows its default: deleting any line changes nothing.
    default = Config(cameras=())
    for section in ("encoding", "recording", "storage", "transcoding", "supervisor", "exporter", "system"):
        assert getattr(cfg, section) == getattr(default, section), section
    assert (cfg.vaapi_driver, cfg.log_level) == (default.vaapi_driver, default.log_level)


def test_example_commented_keys_are_valid_as_they_stand() -> None:
    """Uncommenting every example (url, file and test pattern cameras, transcoding, web_*) still loads."""
    cfg = parse_config(yaml.safe_load(uncommented_example()))
    kinds = {c.id: c.source for c in cfg.cameras}
    assert kinds == {
        "cam1": SourceKind.DEVICE, "cam2": SourceKind.DEVICE, "cam3": SourceKind.URL, "cam4": SourceKind.FILE,
        "demo": SourceKind.TEST_PATTERN,
    }  # fmt: skip
    assert {w.split(":", 1)[0] for w in cfg.warnings} == {
        "web_port", "web_host", "recording.movflags",
        "exporter.tls_cert_file/tls_key_file/basic_auth_username/basic_auth_password_file",  # deprecated (issue 13)
    }  # fmt: skip
    assert len(cfg.warnings) == 4


def test_example_documents_every_accepted_key() -> None:
    raw = yaml.safe_load(uncommented_example())
    keys = accepted_keys()
    missing = [k for k in keys[""] if k not in raw]
    for section in SECTIONS:
        missing += [f"{section}.{k}" for k in keys[section] if k not in raw[section]]
    camera_keys = {k for cam in raw["cameras"].values() for k in cam}
    missing += [f"cameras.<id>.{k}" for k in keys["cameras.<id>"] if k not in camera_keys]
    match_keys = {k for cam in raw["cameras"].values() for k in cam.get("match", {})}
    missing += [f"cameras.<id>.match.{k}" for k in keys["cameras.<id>.match"] if k not in match_keys]
    assert missing == []


def test_example_explains_every_key_on_its_line() -> None:
    """Each `key: value` line (active or commented out) carries its own comment: what, unit, default."""
    undocumented = []
    key_lines = 0
    for line in uncommented_example().splitlines():
        m = re.match(r"^\s*([a-z][a-z0-9_]*):\s+(?!#)(\S.*)$", line)
        if m:
            key_lines += 1
            if "  # " not in m[2]:
                undocumented.append(line.strip())
    assert undocumented == []
    leaf_keys = sum(len(v) for k, v in accepted_keys().items() if k) + len(accepted_keys()[""]) - len(SECTIONS) - 1
    assert key_lines >= leaf_keys


# ---------------------------------------------------------------------------------------------
# Bugs (see the report): each of these tests passes once its fix is in


def test_top_level_that_is_not_a_mapping_names_the_top_level() -> None:
    """Bug: the path of the top level is "", so the line read ": expected a mapping, got [...]"."""
    problems = problems_of(CONFIGS / "top-level-list.yaml")
    assert problems[0] == "top level: expected a mapping, got ['cam1', 'cam2']"


def test_qsv_refuses_presets_it_does_not_have() -> None:
    """Bug: QSV encoders know veryfast..veryslow only; ultrafast/superfast make FFmpeg refuse to open them."""
    problems = problems_of(CONFIGS / "qsv-ultrafast.yaml")
    assert len(problems) == 1
    assert problems[0].startswith("encoding.preset: ") and "'ultrafast'" in problems[0]
    for preset in ("veryfast", "medium", "veryslow"):
        assert parse_config(one_camera(encoding={"codec": "hevc_qsv", "preset": preset})).encoding.preset == preset
    assert parse_config(one_camera(encoding={"codec": "libx264", "preset": "ultrafast"})).encoding.preset == "ultrafast"


def test_threshold_alone_below_the_default_warning_loads() -> None:
    """Bug: setting only disk_usage_threshold: 75 failed on low_space_warning, a key the file never set."""
    cfg = load_config(CONFIGS / "threshold-below-default-warning.yaml")
    assert cfg.storage.disk_usage_threshold == 75
    assert cfg.storage.low_space_warning <= cfg.storage.disk_usage_threshold

"""The legacy bash camera-mapping.conf: read as a config, agreeing with bash, and converted both ways."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from recorder.config import (
    BitrateMode,
    CameraConfig,
    Codec,
    Config,
    ConfigError,
    Container,
    EncodingConfig,
    RecordingConfig,
    Resolution,
    SourceKind,
    StorageConfig,
    legacy,
    legacy_writer,
    load_config,
    parse_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CONF = CONFIGS / "camera-mapping.conf"
BASH = shutil.which("bash")


def meaning(config: Config) -> Config:
    """A config without what only describes where it came from: its warnings and source."""
    return dataclasses.replace(config, warnings=(), source=None)


def bash_values(path: Path, keys: list[str], cwd: Path) -> dict[str, str]:
    """What bash itself assigns to `keys` when it sources `path` in a clean environment."""
    assert BASH, "bash is needed to check what the legacy file means to the original scripts"
    script = 'source "$1"; shift; for k in "$@"; do printf "%s=%s\\0" "$k" "${!k}"; done'
    out = subprocess.run(
        ["env", "-i", BASH, "--noprofile", "--norc", "-c", script, "bash", str(path), *keys],
        capture_output=True, cwd=cwd, timeout=10, check=True,
    ).stdout.decode()  # fmt: skip
    return dict(item.split("=", 1) for item in out.split("\0") if item)


# ---------------------------------------------------------------------------------------------
# Reading camera-mapping.conf


def test_legacy_file_reads_as_a_config() -> None:
    cfg = load_config(CONF)
    assert cfg.cameras == (
        CameraConfig(
            id="cam1", name="Front door", source=SourceKind.DEVICE, location="/dev/video-usb1-video0",
            input_format="h264", resolution=Resolution(2560, 1440), framerate=60,
        ),
        CameraConfig(
            id="cam2", name="Back yard", source=SourceKind.DEVICE, location="/dev/video2", input_format="mjpeg",
            resolution=Resolution(1920, 1080), framerate=30,
        ),
        CameraConfig(
            id="cam3", name="Workshop #3", source=SourceKind.DEVICE,
            location="/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8A2F5B3E-video-index0", input_format="yuyv",
        ),
    )  # fmt: skip
    assert cfg.encoding == EncodingConfig(
        codec=Codec.HEVC_QSV, preset="veryfast", quality=25, lookahead=True, bitrate_mode=BitrateMode.VBR,
        target_bitrate=10000, max_bitrate=15000, gop_size=120, ref_frames=4, extra_hw_frames=64,
    )  # fmt: skip
    assert cfg.recording == RecordingConfig(
        segment_time=1800, container_format=Container.MP4, flush_packets=True, movflags="faststart+frag_keyframe",
        base_directory=Path("/storage/recordings"),
    )  # fmt: skip
    assert cfg.storage == StorageConfig(
        cleanup_enabled=True, cleanup_days=14, disk_usage_threshold=90, low_space_warning=85, check_interval=300
    )
    assert (cfg.vaapi_driver, cfg.log_level, cfg.source) == ("iHD", "INFO", str(CONF))


def test_keys_without_equivalent_are_reported_in_the_warnings() -> None:
    """Nothing is dropped silently: each legacy key we cannot honour is named, in file order."""
    cfg = load_config(CONF)
    gone = "the web interface is gone; the status page is served on exporter.listen_address (default 0.0.0.0:9100)"
    assert cfg.warnings == (
        "line 39: MOVFLAGS: 'faststart' is ignored: MP4 segments are always written fragmented so that a crash "
        "loses at most about one second",
        "line 47: DISK_MONITORING: no equivalent in camera-recorder (the disk is always watched); ignored",
        "line 51: INPUT_BUFFER_SIZE: no equivalent in camera-recorder; ignored",
        "line 52: THREAD_COUNT: no equivalent in camera-recorder; ignored",
        f"line 53: WEB_INTERFACE: {gone}; ignored",
        f"line 54: WEB_PORT: {gone}; ignored",
        "line 55: ALLOWED_NETWORKS: no equivalent in camera-recorder (limit access with a firewall, or basic auth "
        "in --web.config.file); ignored",
        "line 56: CUSTOM_FFMPEG_OPTS: no equivalent in camera-recorder; ignored",
    )


def test_reader_agrees_with_bash_on_the_legacy_file(tmp_path: Path) -> None:
    values = legacy.parse_assignments(CONF.read_text(encoding="utf-8"))
    assert values["CAMERA1_DEVICE"] == "/dev/video-usb1-video0"
    assert values["CAMERA3_NAME"] == "Workshop #3"
    assert bash_values(CONF, list(values), tmp_path) == values


def test_legacy_to_raw_shapes() -> None:
    text = (
        'CAMERA1_DEVICE="${CAMERA1_DEVICE:-/dev/video0}"  # default unless set before\n'
        "CAMERA1_FORMAT=MJPEG\n"
        "CAMERA1_FRAMERATE='30' # quoted number\n"
        "CAMERA1_ENABLED=0\n"
        "CAMERA1_RESOLUTION=\n"
        'LOOKAHEAD_ENABLED="0"\n'
        'CLEANUP_DAYS="7.5"\n'
        'DEBUG_LOGGING="1"\n'
        'WEB_PORT="8080"\n'
        "SOMETHING_ELSE=1\n"
    )
    raw, unsupported = legacy.legacy_to_raw(text)
    # WEB_PORT has no meaning here: not carried into the YAML (where it would warn at every start).
    assert raw == {
        "encoding": {"lookahead": False},
        "storage": {"cleanup_days": 7.5},
        "log_level": "DEBUG",
        "cameras": {"cam1": {"device": "/dev/video0", "input_format": "mjpeg", "framerate": 30, "enabled": False}},
    }
    assert unsupported == ["WEB_PORT", "SOMETHING_ELSE"]


def test_default_expansion_honours_an_earlier_assignment() -> None:
    text = (
        "CAMERA1_DEVICE=/dev/video4\n"
        'CAMERA1_DEVICE="${CAMERA1_DEVICE:-/dev/video0}"\n'
        'CAMERA2_DEVICE="${CAMERA2_DEVICE:-/dev/video2}"\n'
        'CAMERA2_NAME="$CAMERA1_DEVICE and ${CAMERA1_DEVICE}"\n'
        'CAMERA3_NAME="[${UNSET_VARIABLE}]"\n'
    )
    values = legacy.parse_assignments(text)
    assert values["CAMERA1_DEVICE"] == "/dev/video4"
    assert values["CAMERA2_DEVICE"] == "/dev/video2"
    assert values["CAMERA2_NAME"] == "/dev/video4 and /dev/video4"
    assert values["CAMERA3_NAME"] == "[]"


def test_any_camera_number_becomes_cam_n_in_numeric_order() -> None:
    text = "CAMERA10_DEVICE=/dev/video10\nCAMERA2_DEVICE=/dev/video2\nCAMERA7_DEVICE=/dev/video7\n"
    raw, unsupported = legacy.legacy_to_raw(text)
    assert list(raw["cameras"]) == ["cam2", "cam7", "cam10"]
    assert unsupported == []
    assert [c.location for c in parse_config(raw).cameras] == ["/dev/video2", "/dev/video7", "/dev/video10"]


@pytest.mark.parametrize(
    ("suffix", "text", "expected"),
    [
        (".conf", "# anything\n", True),
        (".yaml", 'CAMERA1_DEVICE="/dev/video0"\n', False),
        (".yml", 'CAMERA1_DEVICE="/dev/video0"\n', False),
        ("", '# legacy\nCAMERA1_DEVICE="/dev/video0"\nexport SEGMENT_TIME=600\n', True),
        ("", "cameras:\n  cam1:\n    device: /dev/video0\n", False),
    ],
)
def test_looks_legacy(suffix: str, text: str, expected: bool) -> None:
    assert legacy.looks_legacy(Path(f"/etc/camera-recorder/config{suffix}"), text) is expected


def test_a_legacy_file_without_suffix_loads(tmp_path: Path) -> None:
    path = tmp_path / "camera-mapping"
    path.write_text('CAMERA1_DEVICE="/dev/video0"\nCAMERA1_NAME="Door"\n')
    assert [(c.id, c.name, c.location) for c in load_config(path).cameras] == [("cam1", "Door", "/dev/video0")]


@pytest.mark.parametrize(
    ("name", "line"),
    [
        (
            "legacy-not-assignment.conf",
            "line 3: not a KEY=value assignment: 'if [ -e /dev/video2 ]; then CAMERA2_DEVICE=\"/dev/video2\"; fi'",
        ),
        ("legacy-unclosed-quote.conf", "line 3: CAMERA1_NAME: No closing quotation"),
        ("legacy-bad-framerate.conf", "line 3: CAMERA1_FRAMERATE: expected a positive integer, got 'sixty'"),
    ],
)
def test_legacy_failure_is_one_clean_line(name: str, line: str) -> None:
    path = CONFIGS / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [line]
    assert str(info.value) == f"{path}: {line}"


# ---------------------------------------------------------------------------------------------
# Converting both ways


def test_yaml_to_legacy_to_yaml_keeps_the_meaning() -> None:
    original = load_config(CONFIGS / "legacy-roundtrip.yaml")
    text, unsupported = legacy_writer.config_to_legacy(original)
    assert unsupported == []
    raw, no_equivalent = legacy.legacy_to_raw(text)
    assert no_equivalent == []
    assert meaning(parse_config(raw)) == meaning(original)


def test_legacy_to_yaml_to_legacy_keeps_the_meaning() -> None:
    from_conf = load_config(CONF)
    yaml_text = legacy.raw_to_yaml(legacy.legacy_to_raw(CONF.read_text(encoding="utf-8"))[0])
    via_yaml = parse_config(yaml.safe_load(yaml_text))
    assert meaning(via_yaml) == meaning(from_conf)
    text, _ = legacy_writer.config_to_legacy(via_yaml)
    assert meaning(parse_config(legacy.legacy_to_raw(text)[0])) == meaning(from_conf)


def test_written_legacy_file_means_the_same_to_bash(tmp_path: Path) -> None:
    text, _ = legacy_writer.config_to_legacy(load_config(CONFIGS / "legacy-roundtrip.yaml"))
    path = tmp_path / "camera-mapping.conf"
    path.write_text(text)
    values = legacy.parse_assignments(text)
    assert values["CAMERA2_NAME"] == "Bob's porch"
    assert bash_values(path, list(values), tmp_path) == values


def test_config_to_legacy_reports_what_has_no_legacy_form() -> None:
    cfg = load_config(CONFIGS / "modern.yaml")
    text, unsupported = legacy_writer.config_to_legacy(cfg)
    for note in (
        "cameras.front: written as CAMERA1 (legacy ids are numbered)",
        "cameras.front.cleanup_days: has no legacy form",
        "cameras.garage: a url source has no legacy form",
        "cameras.replay: a file source has no legacy form",
        "cameras.demo: a test_pattern source has no legacy form",
        "supervisor: has no legacy form",
        "exporter: has no legacy form",
        "system: has no legacy form",
        "recording.align_segments: has no legacy form",
        "storage.pressure_target/min_free_minutes: have no legacy form",
        "storage.on_threshold: has no legacy form",
    ):
        assert note in unsupported
    # The camera found by `match` only is reported, not written.
    assert any(n.startswith("cameras.yard") and "no legacy form" in n for n in unsupported)
    values = legacy.parse_assignments(text)
    assert values["CAMERA1_DEVICE"] == cfg.camera("front").location
    assert not any(key.startswith(("CAMERA2_", "CAMERA3_", "CAMERA4_", "CAMERA5_")) for key in values)
    assert "rtsp://" not in text


def test_written_legacy_file_is_commented_and_quoted() -> None:
    text, _ = legacy_writer.config_to_legacy(load_config(CONFIGS / "minimal.yaml"))
    lines = text.splitlines()
    assert lines[0].startswith("# ")
    assert 'CAMERA1_DEVICE="/dev/video0"' in lines
    assert 'SEGMENT_TIME="1800"' in lines
    assert all(line.startswith("#") or "=" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# Bugs (see the report): each of these tests passes once its fix is in


def test_resync_interval_is_reported_not_dropped() -> None:
    """Bug: config_to_legacy checks every storage key but resync_interval, which vanishes silently."""
    cfg = parse_config({"cameras": {"cam1": {"device": "/dev/video0"}}, "storage": {"resync_interval": 600}})
    _, unsupported = legacy_writer.config_to_legacy(cfg)
    assert any(note.startswith("storage.resync_interval") for note in unsupported), unsupported


@pytest.mark.parametrize("level", ["WARNING", "ERROR", "CRITICAL"])
def test_log_level_without_legacy_form_is_reported(level: str) -> None:
    """Bug: DEBUG_LOGGING is on or off, so WARNING/ERROR/CRITICAL came back as INFO without a word."""
    cfg = parse_config({"cameras": {"cam1": {"device": "/dev/video0"}}, "log_level": level})
    _, unsupported = legacy_writer.config_to_legacy(cfg)
    assert any(note.startswith("log_level") for note in unsupported), unsupported


def test_values_are_quoted_so_bash_and_the_reader_read_them_back(tmp_path: Path) -> None:
    """Bug: values were written inside "..." unescaped: a `"` cut the name short on the way back, and `$`,
    backquotes or `"` let a camera name run a command when the original scripts source the file."""
    name = "Porch \"east\" $HOME `touch PWNED` 'x' \\"
    cfg = parse_config({"cameras": {"cam1": {"device": "/dev/video0", "name": name}}})
    text, _ = legacy_writer.config_to_legacy(cfg)
    path = tmp_path / "camera-mapping.conf"
    path.write_text(text)
    assert bash_values(path, ["CAMERA1_NAME"], tmp_path) == {"CAMERA1_NAME": name}
    assert not (tmp_path / "PWNED").exists()
    assert legacy.parse_assignments(text)["CAMERA1_NAME"] == name
    assert load_config(path).cameras[0].name == name


def test_cameras_not_written_are_not_said_to_be_renumbered() -> None:
    """Bug: "cameras.garage: written as CAMERA3" was reported for a url camera that is not written at all."""
    cfg = load_config(CONFIGS / "modern.yaml")
    _, unsupported = legacy_writer.config_to_legacy(cfg)
    for cam in ("yard", "garage", "replay", "demo"):
        assert not any(n.startswith(f"cameras.{cam}: written as") for n in unsupported), unsupported


# ---------------------------------------------------------------------------------------------
# As strict as YAML (issue 21): typos are errors, every message names the legacy key and its line


def legacy_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "camera-mapping.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == [f"{path}: {p}" for p in info.value.problems]
    return info.value.problems


def test_a_mistyped_camera_key_is_an_error_with_a_did_you_mean(tmp_path: Path) -> None:
    """The operator's typo that recorded at the default resolution: now refused, like the same typo in YAML."""
    text = (
        'CAMERA1_DEVICE="/dev/video0"\nCAMERA1_RESOLUTON="2560x1440"\nCAMERA1_BRIGHTNESS=128\n'
        'CAMERA1_FRAMRATE="${CAMERA1_FRAMRATE:-60}"\n'  # the shell-default shape: its own default, not a use
    )
    assert legacy_problems(tmp_path, text) == [
        "line 2: CAMERA1_RESOLUTON: unknown key (did you mean 'CAMERA1_RESOLUTION'?)",
        "line 3: CAMERA1_BRIGHTNESS: unknown key; a camera's keys are CAMERA1_DEVICE, CAMERA1_NAME, "
        "CAMERA1_RESOLUTION, CAMERA1_FRAMERATE, CAMERA1_FORMAT, CAMERA1_ENABLED",
        "line 4: CAMERA1_FRAMRATE: unknown key (did you mean 'CAMERA1_FRAMERATE'?)",
    ]
    with pytest.raises(ConfigError):
        legacy.legacy_to_raw(text)


def test_a_key_with_a_known_prefix_is_an_error(tmp_path: Path) -> None:
    text = 'CAMERA1_DEVICE="/dev/video0"\nSEGMNT_TIME=600\nDEBUG_LEVEL=1\nENCODING_QUALTY=20\n'
    assert legacy_problems(tmp_path, text) == [
        "line 2: SEGMNT_TIME: unknown key (did you mean 'SEGMENT_TIME'?)",
        "line 3: DEBUG_LEVEL: unknown key; the DEBUG_ keys are DEBUG_LOGGING",
        "line 4: ENCODING_QUALTY: unknown key (did you mean 'ENCODING_QUALITY'?)",
    ]


def test_the_operators_own_variables_are_not_errors(tmp_path: Path) -> None:
    """A helper variable used in an expansion is bash's business; an unused one is named, not refused."""
    path = tmp_path / "camera-mapping.conf"
    path.write_text(
        'BASE=/storage\nRECORDINGS_BASE="$BASE/recordings"\nCAMERA1_DEVICE=/dev/video0\nSITE=north\n'
        'DISK_ROOT=/dev/v4l\nCAMERA2_DEVICE="$DISK_ROOT/by-id/usb-x-video-index0"\n'  # a known prefix, but used
    )
    cfg = load_config(path)
    assert cfg.recording.base_directory == Path("/storage/recordings")
    assert cfg.cameras[1].location == "/dev/v4l/by-id/usb-x-video-index0"
    assert cfg.warnings == ("line 4: SITE: not a camera-recorder key; ignored",)


def test_invalid_values_name_the_legacy_key_and_line_not_the_yaml_key(tmp_path: Path) -> None:
    text = (
        "CAMERA1_DEVICE=/dev/video0\n"
        "CAMERA2_DEVICE=/dev/video1\n"
        "CAMERA2_FRAMERATE=sixty\n"
        "CAMERA3_NAME=Porch\n"
        "CAMERA4_DEVICE=/dev/video0\n"
        "TARGET_BITRATE=10000\n"
        "MAX_BITRATE=5000\n"
        "RECORDINGS_BASE=/etc\n"
    )
    problems = legacy_problems(tmp_path, text)
    assert problems == [  # in the order of the file
        "lines 1, 5: CAMERA1_DEVICE and CAMERA4_DEVICE name the same device '/dev/video0'",
        "line 3: CAMERA2_FRAMERATE: expected a positive integer, got 'sixty'",
        "line 4: CAMERA3_DEVICE: missing: camera 3 has CAMERA3_NAME but no CAMERA3_DEVICE",
        "line 7: MAX_BITRATE: must be >= TARGET_BITRATE (10000), got 5000",
        "line 8: RECORDINGS_BASE: must be a folder of its own, not the system folder '/etc', got '/etc'",
    ]
    assert not any("cameras." in p or "encoding." in p or "recording." in p for p in problems)


def test_a_legacy_warning_names_the_legacy_key(tmp_path: Path) -> None:
    path = tmp_path / "camera-mapping.conf"
    path.write_text("CAMERA1_DEVICE=/dev/video0\nCAMERA1_ENABLED=0\nCONTAINER_FORMAT=mp4\nMOVFLAGS=faststart\n")
    assert load_config(path).warnings == (
        "line 2: CAMERA1_ENABLED: every camera is disabled; nothing will be recorded",
        "line 4: MOVFLAGS: 'faststart' is ignored: MP4 segments are always written fragmented so that a crash "
        "loses at most about one second",
    )


def test_an_empty_value_is_an_unset_one_as_in_bash(tmp_path: Path) -> None:
    """The scripts test `[ -n "$CAMERA1_RESOLUTION" ]`: an empty value means the camera's own default."""
    path = tmp_path / "camera-mapping.conf"
    path.write_text('CAMERA1_DEVICE=/dev/video0\nCAMERA1_RESOLUTION=""\nMOVFLAGS=\n')
    cfg = load_config(path)
    assert (cfg.cameras[0].resolution, cfg.recording.movflags) == (None, None)

"""FFmpeg argv tables: golden argv per source kind, encoder and container, and real FFmpeg accepting them."""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recorder.config import PRESETS, BitrateMode, Codec, Config, ConfigError, Container, SourceKind, parse_config
from recorder.ffmpeg.presets import SEGMENT_LIST_FD, FFmpegCommand, build_command
from recorder.footage.segments import parse_segment_list_line, parse_segment_name

BY_ID = "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_8A2F5B3E-video-index0"

# The shared fragments of every command, spelled out once; each golden below adds its own parts.
GLOBAL = [
    "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+warning",
    "-progress", "pipe:1", "-stats_period", "1", "-n",
]  # fmt: skip
SEGMENT = [
    "-map", "0:v:0", "-an", "-sn", "-dn", "-f", "segment", "-segment_time", "1800", "-reset_timestamps", "1",
    "-strftime", "1", "-segment_list", "pipe:3", "-segment_list_type", "csv",
]  # fmt: skip
MKV = ["-segment_format", "matroska", "-segment_format_options", "cluster_time_limit=1000:flush_packets=1"]
MP4_OPTIONS = "movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:flush_packets=1"
MP4 = ["-segment_format", "mp4", "-segment_format_options", MP4_OPTIONS]
PLAIN_DEVICE = ["-f", "v4l2", "-thread_queue_size", "512", "-i", "/dev/video0"]


def config(camera: dict[str, Any] | None = None, **sections: Any) -> Config:
    """A one-camera config (`cam1`, /dev/video0 unless given) with the given sections."""
    return parse_config({"cameras": {"cam1": camera or {"device": "/dev/video0"}}, **sections})


def command(camera: dict[str, Any] | None = None, **sections: Any) -> FFmpegCommand:
    cfg = config(camera, **sections)
    return build_command(cfg.cameras[0], cfg, "ffmpeg")


def has_run(argv: list[str], run: list[str]) -> bool:
    """Whether `run` occurs in `argv` as consecutive words."""
    return any(argv[i : i + len(run)] == run for i in range(len(argv) - len(run) + 1))


def out(ext: str = "mkv", base: str = "/storage/recordings", cam: str = "cam1") -> str:
    return f"{base}/{cam}/{cam}_%Y%m%d_%H%M%S.{ext}"


# ---------------------------------------------------------------------------------------------
# Golden argv per source kind


def test_golden_device_h264_copy_2560x1440_at_60() -> None:
    """The original's main case: a USB camera's own H.264 at 2560x1440@60, stream-copied into segments."""
    cmd = command({"device": BY_ID, "resolution": "2560x1440", "framerate": 60, "input_format": "h264"})
    assert list(cmd.argv) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+warning",
        "-progress", "pipe:1", "-stats_period", "1", "-n",
        "-f", "v4l2", "-thread_queue_size", "512",
        "-input_format", "h264", "-video_size", "2560x1440", "-framerate", "60",
        "-i", BY_ID,
        "-c:v", "copy",
        "-map", "0:v:0", "-an", "-sn", "-dn",
        "-f", "segment", "-segment_time", "1800", "-reset_timestamps", "1", "-strftime", "1",
        "-segment_list", "pipe:3", "-segment_list_type", "csv",
        "-segment_format", "matroska", "-segment_format_options", "cluster_time_limit=1000:flush_packets=1",
        "/storage/recordings/cam1/cam1_%Y%m%d_%H%M%S.mkv",
    ]  # fmt: skip
    assert dict(cmd.env) == {"TZ": "UTC0"}
    assert cmd.output_dir == Path("/storage/recordings/cam1")
    assert cmd.codec is Codec.COPY
    assert cmd.camera_id == "cam1"


def test_golden_rtsp_url_over_tcp_with_socket_timeout() -> None:
    url = "rtsp://viewer:secret@192.168.1.64:554/Streaming/Channels/101"
    cmd = command({"url": url})
    assert list(cmd.argv) == [
        *GLOBAL, "-rtsp_transport", "tcp", "-timeout", "10000000", "-i", url, "-c:v", "copy", *SEGMENT, *MKV, out()
    ]  # fmt: skip
    assert dict(cmd.env) == {"TZ": "UTC0"}


def test_golden_http_url_reconnects() -> None:
    url = "https://cam.example/live.ts"
    argv = list(command({"url": url}).argv)
    assert argv == [
        *GLOBAL, "-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_delay_max", "5",
        "-rw_timeout", "10000000", "-i", url, "-c:v", "copy", *SEGMENT, *MKV, out(),
    ]  # fmt: skip


def test_golden_srt_url_has_no_scheme_options() -> None:
    url = "srt://192.168.1.70:9000"
    assert list(command({"url": url}).argv) == [*GLOBAL, "-i", url, "-c:v", "copy", *SEGMENT, *MKV, out()]


def test_golden_file_replayed_in_real_time_forever() -> None:
    cmd = command({"file": "/srv/clips/sample.mkv"})
    assert list(cmd.argv) == [
        *GLOBAL, "-re", "-stream_loop", "-1", "-i", "/srv/clips/sample.mkv", "-c:v", "copy", *SEGMENT, *MKV, out()
    ]  # fmt: skip


def test_golden_test_pattern_is_encoded_live_with_one_keyframe_a_second() -> None:
    cmd = command({"test_pattern": True, "resolution": "640x360", "framerate": 15})
    assert list(cmd.argv) == [
        *GLOBAL, "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-pix_fmt", "yuv420p",
        *SEGMENT, *MKV, out(),
    ]  # fmt: skip
    assert cmd.codec is Codec.LIBX264  # `copy` of raw frames means encoding them
    assert dict(cmd.env) == {"TZ": "UTC0"}


def test_test_pattern_defaults_to_720p_at_30() -> None:
    argv = command({"test_pattern": True}).argv
    assert argv[argv.index("-i") + 1] == "testsrc2=size=1280x720:rate=30"
    assert argv[argv.index("-g") + 1] == "30"


def test_test_pattern_with_a_configured_encoder_uses_that_encoder() -> None:
    cmd = command({"test_pattern": True}, encoding={"codec": "libx265"})
    assert cmd.codec is Codec.LIBX265
    assert cmd.argv[cmd.argv.index("-c:v") + 1] == "libx265"
    assert "zerolatency" not in cmd.argv


def test_device_node_resolved_by_hotplug_replaces_the_configured_path() -> None:
    cfg = parse_config({"cameras": {"cam1": {"match": {"serial": "046d_Logitech_BRIO_5C1A9E0F"}}}})
    argv = build_command(cfg.cameras[0], cfg, "ffmpeg", device_node="/dev/video7").argv
    assert argv[argv.index("-i") + 1] == "/dev/video7"


# ---------------------------------------------------------------------------------------------
# Golden argv per encoder and bitrate mode (the part between the input and the segment muxer)

HW_QSV = ["-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"]
HW_VAAPI = ["-vaapi_device", "/dev/dri/renderD128"]
QSV_VF = ["-vf", "hwupload=extra_hw_frames=64,format=qsv"]
VAAPI_VF = ["-vf", "format=nv12,hwupload"]
X26X = ["-preset", "medium", "-g", "120", "-refs", "3", "-pix_fmt", "yuv420p"]
QSV = ["-preset", "medium", "-g", "120", "-refs", "3"]

ENCODER_GOLDENS: dict[tuple[Codec, BitrateMode], tuple[list[str], list[str]]] = {
    # (hardware set-up before the input, filters and codec options after it)
    (Codec.H264_QSV, BitrateMode.VBR): (
        HW_QSV,
        [*QSV_VF, "-c:v", "h264_qsv", *QSV, "-global_quality", "23", "-look_ahead", "1",
         "-b:v", "8000k", "-maxrate", "12000k"],
    ),
    (Codec.H264_QSV, BitrateMode.CBR): (
        HW_QSV,
        [*QSV_VF, "-c:v", "h264_qsv", *QSV, "-global_quality", "23",
         "-b:v", "8000k", "-maxrate", "8000k", "-minrate", "8000k"],
    ),
    (Codec.H264_QSV, BitrateMode.CQP): (HW_QSV, [*QSV_VF, "-c:v", "h264_qsv", *QSV, "-q:v", "23"]),
    (Codec.HEVC_QSV, BitrateMode.VBR): (
        HW_QSV,
        [*QSV_VF, "-c:v", "hevc_qsv", *QSV, "-global_quality", "23", "-b:v", "8000k", "-maxrate", "12000k"],
    ),
    (Codec.HEVC_QSV, BitrateMode.CQP): (HW_QSV, [*QSV_VF, "-c:v", "hevc_qsv", *QSV, "-q:v", "23"]),
    (Codec.H264_VAAPI, BitrateMode.VBR): (
        HW_VAAPI,
        [*VAAPI_VF, "-c:v", "h264_vaapi", "-g", "120", "-rc_mode", "VBR", "-b:v", "8000k", "-maxrate", "12000k"],
    ),
    (Codec.H264_VAAPI, BitrateMode.CBR): (
        HW_VAAPI, [*VAAPI_VF, "-c:v", "h264_vaapi", "-g", "120", "-rc_mode", "CBR", "-b:v", "8000k"]
    ),
    (Codec.H264_VAAPI, BitrateMode.CQP): (
        HW_VAAPI, [*VAAPI_VF, "-c:v", "h264_vaapi", "-g", "120", "-rc_mode", "CQP", "-qp", "23"]
    ),
    (Codec.HEVC_VAAPI, BitrateMode.VBR): (
        HW_VAAPI,
        [*VAAPI_VF, "-c:v", "hevc_vaapi", "-g", "120", "-rc_mode", "VBR", "-b:v", "8000k", "-maxrate", "12000k"],
    ),
    (Codec.LIBX264, BitrateMode.VBR): ([], ["-c:v", "libx264", *X26X, "-crf", "23", "-maxrate", "12000k",
                                            "-bufsize", "12000k"]),
    (Codec.LIBX264, BitrateMode.CBR): ([], ["-c:v", "libx264", *X26X, "-b:v", "8000k", "-maxrate", "8000k",
                                            "-bufsize", "8000k"]),
    (Codec.LIBX264, BitrateMode.CQP): ([], ["-c:v", "libx264", *X26X, "-qp", "23"]),
    (Codec.LIBX265, BitrateMode.VBR): ([], ["-c:v", "libx265", *X26X, "-crf", "23", "-maxrate", "12000k",
                                            "-bufsize", "12000k"]),
    (Codec.LIBX265, BitrateMode.CQP): ([], ["-c:v", "libx265", *X26X, "-qp", "23"]),
}  # fmt: skip


@pytest.mark.parametrize(("codec", "mode"), list(ENCODER_GOLDENS), ids=lambda v: str(v))
def test_golden_encoder(codec: Codec, mode: BitrateMode) -> None:
    hw, encoder = ENCODER_GOLDENS[codec, mode]
    cmd = command(encoding={"codec": codec.value, "bitrate_mode": mode.value})
    assert list(cmd.argv) == [*GLOBAL, *hw, *PLAIN_DEVICE, *encoder, *SEGMENT, *MKV, out()]
    assert cmd.codec is codec


@pytest.mark.parametrize("mode", list(BitrateMode), ids=str)
def test_copy_ignores_the_bitrate_mode(mode: BitrateMode) -> None:
    argv = list(command(encoding={"codec": "copy", "bitrate_mode": mode.value}).argv)
    assert argv == [*GLOBAL, *PLAIN_DEVICE, "-c:v", "copy", *SEGMENT, *MKV, out()]


def test_encoder_values_come_from_config() -> None:
    enc = {
        "codec": "h264_qsv", "preset": "slow", "quality": 28, "target_bitrate": 6000, "max_bitrate": 9000,
        "gop_size": 60, "ref_frames": 2, "lookahead": False, "extra_hw_frames": 32,
    }  # fmt: skip
    argv = list(command(encoding=enc).argv)
    assert has_run(argv, ["-vf", "hwupload=extra_hw_frames=32,format=qsv"])
    assert has_run(argv, ["-preset", "slow"])
    assert has_run(argv, ["-g", "60"])
    assert has_run(argv, ["-refs", "2"])
    assert has_run(argv, ["-b:v", "6000k", "-maxrate", "9000k"])
    assert has_run(argv, ["-look_ahead", "0"])
    assert has_run(argv, ["-global_quality", "28"])


def test_vaapi_uses_the_configured_render_node() -> None:
    argv = command(encoding={"codec": "h264_vaapi"}, system={"hw_device": "/dev/dri/renderD129"}).argv
    assert argv[argv.index("-vaapi_device") + 1] == "/dev/dri/renderD129"
    assert argv.index("-vaapi_device") < argv.index("-i")  # a global option: before the input


@pytest.mark.parametrize("codec", [Codec.H264_QSV, Codec.HEVC_QSV, Codec.H264_VAAPI, Codec.HEVC_VAAPI], ids=str)
def test_hardware_encoders_name_the_libva_driver(codec: Codec) -> None:
    cmd = command(encoding={"codec": codec.value}, vaapi_driver="i965")
    assert dict(cmd.env) == {"LIBVA_DRIVER_NAME": "i965", "TZ": "UTC0"}


@pytest.mark.parametrize("codec", [Codec.COPY, Codec.LIBX264, Codec.LIBX265], ids=str)
def test_software_encoders_only_set_utc(codec: Codec) -> None:
    assert dict(command(encoding={"codec": codec.value}).env) == {"TZ": "UTC0"}


def test_qsv_constant_qp_is_set_alone() -> None:
    """Bug: -global_quality overrides the QP that -q:v sets (QSV then encodes at QP 0, near-lossless), and
    FFmpeg refuses to open h264_qsv with both a constant QP and look-ahead ("More than one of: { constant
    qscale, lookahead, VCM } requested")."""
    for codec in (Codec.H264_QSV, Codec.HEVC_QSV):
        argv = command(encoding={"codec": codec.value, "bitrate_mode": "CQP", "quality": 25}).argv
        assert argv[argv.index("-q:v") + 1] == "25"
        assert "-global_quality" not in argv, codec
        assert "-look_ahead" not in argv, codec


def test_qsv_constant_bitrate_is_not_turned_into_look_ahead() -> None:
    """Bug: QSV picks its look-ahead mode (LA_ICQ) over CBR whenever -look_ahead 1 is given."""
    argv = command(encoding={"codec": "h264_qsv", "bitrate_mode": "CBR", "lookahead": True}).argv
    assert "-look_ahead" not in argv


# ---------------------------------------------------------------------------------------------
# Containers and the segment muxer


def test_golden_mp4_is_always_fragmented() -> None:
    argv = list(command(recording={"container_format": "mp4"}).argv)
    assert argv == [*GLOBAL, *PLAIN_DEVICE, "-c:v", "copy", *SEGMENT, *MP4, out("mp4")]


@pytest.mark.parametrize("movflags", ["faststart+frag_keyframe", "+faststart+frag_keyframe", "+faststart"])
def test_mp4_user_faststart_is_dropped(movflags: str) -> None:
    cmd = command(recording={"container_format": "mp4", "movflags": movflags})
    assert list(cmd.argv) == [*GLOBAL, *PLAIN_DEVICE, "-c:v", "copy", *SEGMENT, *MP4, out("mp4")]
    assert "faststart" not in " ".join(cmd.argv)


def test_mp4_other_user_movflags_are_kept() -> None:
    argv = command(recording={"container_format": "mp4", "movflags": "faststart+frag_keyframe+omit_tfhd_offset"}).argv
    options = argv[argv.index("-segment_format_options") + 1]
    assert options == (
        "movflags=+frag_keyframe+empty_moov+default_base_moof+omit_tfhd_offset:frag_duration=1000000:flush_packets=1"
    )


def test_flush_packets_off_reaches_the_per_file_muxer() -> None:
    argv = command(recording={"flush_packets": False}).argv
    assert argv[argv.index("-segment_format_options") + 1] == "cluster_time_limit=1000:flush_packets=0"


def test_align_segments_cuts_at_clock_time() -> None:
    argv = list(command(recording={"align_segments": True, "segment_time": 600}).argv)
    at = argv.index("-segment_time")
    assert argv[at : at + 4] == ["-segment_time", "600", "-segment_atclocktime", "1"]
    assert "-segment_atclocktime" not in command(recording={"align_segments": False}).argv


def test_output_goes_to_the_camera_folder_named_by_utc_time() -> None:
    cfg = parse_config(
        {"cameras": {"front-door": {"device": "/dev/video0"}}, "recording": {"base_directory": "/mnt/rec"}}
    )
    cmd = build_command(cfg.cameras[0], cfg, "/usr/lib/jellyfin-ffmpeg/ffmpeg")
    assert cmd.argv[0] == "/usr/lib/jellyfin-ffmpeg/ffmpeg"
    assert cmd.argv[-1] == "/mnt/rec/front-door/front-door_%Y%m%d_%H%M%S.mkv"
    assert cmd.output_dir == Path("/mnt/rec/front-door")
    assert cmd.env["TZ"] == "UTC0"  # strftime in the name runs in UTC: no hour repeats when DST ends


# ---------------------------------------------------------------------------------------------
# Optional fragments and table hygiene


@pytest.mark.parametrize(
    ("camera", "present", "absent"),
    [
        ({"device": "/dev/video0"}, [], ["-input_format", "-video_size", "-framerate"]),
        ({"device": "/dev/video0", "resolution": "1920x1080"}, ["-video_size"], ["-input_format", "-framerate"]),
        ({"device": "/dev/video0", "framerate": 30}, ["-framerate"], ["-input_format", "-video_size"]),
        ({"device": "/dev/video0", "input_format": "yuyv"}, ["-input_format"], ["-video_size", "-framerate"]),
    ],
)
def test_optional_device_fragments_are_dropped_when_unset(
    camera: dict[str, Any], present: list[str], absent: list[str]
) -> None:
    argv = command(camera).argv
    for flag in present:
        assert flag in argv
    for flag in absent:
        assert flag not in argv


def test_input_format_uses_v4l2_names() -> None:
    argv = command({"device": "/dev/video0", "input_format": "yuyv"}).argv
    assert argv[argv.index("-input_format") + 1] == "yuyv422"


def _all_commands() -> Iterator[tuple[str, FFmpegCommand]]:
    sources: dict[SourceKind, dict[str, Any]] = {
        SourceKind.DEVICE: {"device": "/dev/video0", "resolution": "1280x720", "framerate": 30, "input_format": "h264"},
        SourceKind.URL: {"url": "rtsp://192.168.1.64/stream1"},
        SourceKind.FILE: {"file": "/srv/clip.mkv"},
        SourceKind.TEST_PATTERN: {"test_pattern": True},
    }
    for kind, camera in sources.items():
        for codec in Codec:
            for mode in BitrateMode:
                for container in Container:
                    for align in (False, True):
                        enc = {"codec": codec.value, "bitrate_mode": mode.value}
                        rec = {"container_format": container.value, "align_segments": align}
                        yield f"{kind}-{codec}-{mode}-{container}-{align}", command(camera, encoding=enc, recording=rec)


def test_every_combination_builds_a_complete_command() -> None:
    """No placeholder left unfilled, one input, one output, nothing but strings: for every table entry."""
    count = 0
    for name, cmd in _all_commands():
        count += 1
        assert all(isinstance(part, str) and part for part in cmd.argv), name
        assert not any(re.search(r"\{[a-z_]+\}", part) for part in cmd.argv), name
        assert cmd.argv.count("-i") == 1, name
        assert cmd.argv.count("-c:v") == 1, name
        assert cmd.argv[-1].startswith("/storage/recordings/cam1/cam1_%Y%m%d_%H%M%S."), name
        assert cmd.env["TZ"] == "UTC0", name
    assert count == len(SourceKind) * len(Codec) * len(BitrateMode) * len(Container) * 2


@pytest.mark.parametrize(
    ("camera", "sections", "gone", "expansion"),
    [
        # The user-visible names are table keys: they never reach FFmpeg, their expansions do.
        ({"test_pattern": True}, {}, "test_pattern", ["-f", "lavfi"]),
        ({"device": "/dev/video0"}, {}, "device", ["-f", "v4l2"]),
        ({"device": "/dev/video0"}, {"recording": {"container_format": "mkv"}}, "mkv", ["-segment_format", "matroska"]),
        (
            {"device": "/dev/video0"},
            {"encoding": {"codec": "libx264", "bitrate_mode": "VBR"}},
            "VBR",
            ["-crf", "23", "-maxrate", "12000k", "-bufsize", "12000k"],
        ),
        (
            {"device": "/dev/video0"},
            {"encoding": {"codec": "h264_qsv"}},
            "qsv=hw",
            ["-vf", "hwupload=extra_hw_frames=64,format=qsv"],
        ),
    ],
)
def test_preset_name_is_gone_and_its_expansion_is_there(
    camera: dict[str, Any], sections: dict[str, Any], gone: str, expansion: list[str]
) -> None:
    argv = list(command(camera, **sections).argv)
    without_output = argv[:-1]  # the output name carries the container's extension, nothing else may
    if gone == "qsv=hw":  # the QSV device is initialised once, globally, never repeated per option
        assert argv.count("qsv=hw") == 1
    else:
        assert gone not in without_output
    assert has_run(argv, expansion)


def test_shell_form_round_trips_to_the_exact_argv_and_env() -> None:
    cmd = command({"url": "rtsp://u:p w@cam/x?a=1&b=2"}, encoding={"codec": "h264_vaapi"})
    words = shlex.split(cmd.shell())
    assert words[:2] == ["LIBVA_DRIVER_NAME=iHD", "TZ=UTC0"]
    assert tuple(words[2:]) == cmd.argv


# ---------------------------------------------------------------------------------------------
# The installed FFmpeg knows every option and named value the tables pass


@dataclass(frozen=True)
class EncoderHelp:
    options: frozenset[str]
    constants: dict[str, frozenset[str]]  # option -> its named values, for options that have them


_OPTION_LINE = re.compile(r"^  -(\S+)\s+<\w+>")
_CONSTANT_LINE = re.compile(r"^     (\S+)\s")


def _ffmpeg_help(*args: str) -> str:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-h", *args], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def _parse_avoptions(text: str) -> EncoderHelp:
    options: set[str] = set()
    constants: dict[str, set[str]] = {}
    current = ""
    for line in text.splitlines():
        if m := _OPTION_LINE.match(line):
            current = m[1]
            options.add(current)
        elif (m := _CONSTANT_LINE.match(line)) and current:
            constants.setdefault(current, set()).add(m[1])
    return EncoderHelp(frozenset(options), {k: frozenset(v) for k, v in constants.items()})


@functools.cache
def _generic_options() -> frozenset[str]:
    """ffmpeg's own per-stream options and the AVCodecContext options every encoder takes."""
    text = _ffmpeg_help("full")
    own = {m[1] for m in re.finditer(r"^-(\S+)", text, re.MULTILINE)}
    codec_ctx = text.split("AVCodecContext AVOptions:", 1)[1].split("AVOptions:", 1)[0]
    return frozenset(own | _parse_avoptions(codec_ctx).options)


@functools.cache
def _encoder_help(encoder: str) -> EncoderHelp:
    text = _ffmpeg_help(f"encoder={encoder}")
    assert f"Encoder {encoder} " in text, f"the installed FFmpeg has no {encoder}"
    return _parse_avoptions(text)


@pytest.mark.parametrize("codec", [c for c in Codec if c is not Codec.COPY], ids=str)
def test_installed_ffmpeg_knows_every_encoder_option(codec: Codec) -> None:
    """Bug (hevc_qsv): FFmpeg has no `look_ahead` for it; it only warns "Codec AVOption look_ahead ... has
    not been used for any stream" on every start, and the configured look-ahead silently does nothing."""
    helptext = _encoder_help(codec.value)
    for mode in BitrateMode:
        argv = list(command(encoding={"codec": codec.value, "bitrate_mode": mode.value}).argv)
        encoder_part = argv[argv.index("-c:v") + 2 : argv.index("-map")]
        pairs = list(zip(encoder_part[::2], encoder_part[1::2], strict=True))
        for flag, value in pairs:
            name = flag.lstrip("-").split(":", 1)[0]
            assert name in helptext.options or name in _generic_options(), f"{codec} {mode}: {flag} unknown"
            named = helptext.constants.get(name)
            if named and not re.fullmatch(r"-?\d+", value):
                assert value in named, f"{codec} {mode}: {flag} {value} not one of {sorted(named)}"


@pytest.mark.parametrize("codec", [Codec.H264_QSV, Codec.HEVC_QSV], ids=str)
def test_every_preset_the_config_accepts_is_known_to_the_encoder(codec: Codec) -> None:
    """Bug: QSV presets are veryfast..veryslow; with ultrafast or superfast FFmpeg refuses to open the
    encoder ("Unable to parse option value"), so the camera would crash-loop instead of failing validation."""
    known = _encoder_help(codec.value).constants["preset"]
    for preset in PRESETS:
        try:
            cfg = config(encoding={"codec": codec.value, "preset": preset})
        except ConfigError:
            continue  # refused by validation: fine, it never reaches FFmpeg
        argv = build_command(cfg.cameras[0], cfg, "ffmpeg").argv
        assert argv[argv.index("-preset") + 1] in known, f"{codec} accepts {preset!r} in config"


# ---------------------------------------------------------------------------------------------
# Real FFmpeg records with these commands: first segment completed, readable by ffprobe


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s H.264 clip with a keyframe every second: the file source, and what copy stores."""
    path = tmp_path_factory.mktemp("clip") / "sample.mkv"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10",
            "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True, timeout=30,
    )  # fmt: skip
    return path


def _first_completed_segment(cmd: FFmpegCommand, deadline_s: float = 8.0) -> tuple[Path, str]:
    """Run FFmpeg as the daemon does (segment list on fd 3) until it reports its first completed segment."""
    cmd.output_dir.mkdir(parents=True)
    stderr_path = cmd.output_dir.parent / "ffmpeg.stderr"
    list_read, list_write = os.pipe()
    # A local time zone far from UTC in the inherited environment: the command's TZ must win.
    env = {**os.environ, "TZ": "XXX-7", **cmd.env}
    started = time.time()
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            close_fds=False,
            preexec_fn=lambda: os.dup2(list_write, SEGMENT_LIST_FD),
        )
    os.close(list_write)
    try:
        line = b""
        deadline = time.monotonic() + deadline_s
        while b"\n" not in line:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no segment completed in {deadline_s:g} s: {stderr_path.read_text()}")
            ready, _, _ = select.select([list_read], [], [], remaining)
            if ready:
                chunk = os.read(list_read, 4096)
                if not chunk:
                    proc.wait(timeout=5)
                    raise AssertionError(f"FFmpeg exited {proc.returncode} first: {stderr_path.read_text()}")
                line += chunk
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(list_read)
    entry = parse_segment_list_line(line.split(b"\n", 1)[0].decode())
    assert entry is not None, line
    name, _start, end = entry
    assert end > 0
    parsed = parse_segment_name(name)
    assert parsed is not None and parsed.camera == cmd.camera_id, name
    # Named in UTC: the stamp is the wall-clock start, not seven hours off.
    assert started - 2 <= parsed.start <= time.time() + 1, (name, started)
    return cmd.output_dir / name, stderr_path.read_text()


def _ffprobe(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-of", "json",
            "-show_entries", "stream=codec_name,width,height,nb_read_frames:format=format_name", str(path),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return {**data["streams"][0], "format_name": data["format"]["format_name"]}


@pytest.mark.parametrize(
    ("source", "codec", "container", "align"),
    [
        ("test_pattern", "copy", "mkv", False),
        ("test_pattern", "libx264", "mp4", False),
        ("file", "copy", "mp4", False),
        ("file", "libx264", "mkv", True),
    ],
)
def test_real_ffmpeg_records_a_readable_segment(
    tmp_path: Path, clip: Path, source: str, codec: str, container: str, align: bool
) -> None:
    camera: dict[str, Any] = (
        {"test_pattern": True, "resolution": "160x120", "framerate": 10}
        if source == "test_pattern"
        else {"file": str(clip)}
    )
    cfg = parse_config(
        {
            "cameras": {"cam1": camera},
            "encoding": {"codec": codec, "preset": "ultrafast", "gop_size": 10},
            "recording": {
                "base_directory": str(tmp_path / "rec"), "segment_time": 1, "container_format": container,
                "align_segments": align,
            },
        }
    )  # fmt: skip
    cmd = build_command(cfg.cameras[0], cfg, "ffmpeg")
    segment, stderr = _first_completed_segment(cmd)
    assert "[error]" not in stderr and "[fatal]" not in stderr, stderr
    info = _ffprobe(segment)
    assert info["codec_name"] == "h264"
    assert (info["width"], info["height"]) == (160, 120)
    assert int(info["nb_read_frames"]) > 0
    if container == "mp4":
        assert "mp4" in info["format_name"]
        assert b"moof" in segment.read_bytes()  # fragmented: readable up to its last fragment
    else:
        assert "matroska" in info["format_name"]

"""Transcode argv from the recording encoder presets: goldens for QSV, VA-API and x26x (as test_presets
does for recording), the transcoding section's codec/preset/quality in place, and real FFmpeg running it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import probe
from transcoding_support import make_segment

from recorder.config import BitrateMode, Codec, Container, parse_config
from recorder.ffmpeg.presets import build_transcode_command

SRC = "/storage/recordings/cam1/cam1_20261101_020000.mkv"
TMP = "/storage/recordings/cam1/.cam1_20261101_020000.mkv.transcoding"
GLOBAL = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "level+error", "-y"]
OUTPUT = ["-map", "0:v:0", "-an", "-sn", "-dn", "-fps_mode", "passthrough"]
MKV = ["-f", "matroska", TMP]
HW_QSV = ["-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"]
QSV_VF = ["-vf", "hwupload=extra_hw_frames=64,format=qsv"]
HW_VAAPI = ["-vaapi_device", "/dev/dri/renderD128"]
VAAPI_VF = ["-vf", "format=nv12,hwupload"]
# The transcoding section's preset and quality (the original's: slow, 26), the encoding section's GOP.
QSV = ["-preset", "slow", "-g", "120", "-refs", "3"]
X26X = ["-preset", "slow", "-g", "120", "-refs", "3", "-pix_fmt", "yuv420p"]

TRANSCODE_GOLDENS: dict[tuple[Codec, BitrateMode], list[str]] = {
    (Codec.HEVC_QSV, BitrateMode.VBR): [
        *HW_QSV, "-i", SRC, *QSV_VF, "-c:v", "hevc_qsv", *QSV, "-global_quality", "26",
        "-b:v", "8000k", "-maxrate", "12000k",
    ],
    (Codec.HEVC_QSV, BitrateMode.CQP): [*HW_QSV, "-i", SRC, *QSV_VF, "-c:v", "hevc_qsv", *QSV, "-q:v", "26"],
    (Codec.H264_QSV, BitrateMode.VBR): [
        *HW_QSV, "-i", SRC, *QSV_VF, "-c:v", "h264_qsv", *QSV, "-global_quality", "26", "-look_ahead", "1",
        "-b:v", "8000k", "-maxrate", "12000k",
    ],
    (Codec.HEVC_VAAPI, BitrateMode.VBR): [
        *HW_VAAPI, "-i", SRC, *VAAPI_VF, "-c:v", "hevc_vaapi", "-g", "120", "-rc_mode", "VBR",
        "-b:v", "8000k", "-maxrate", "12000k",
    ],
    (Codec.H264_VAAPI, BitrateMode.CQP): [
        *HW_VAAPI, "-i", SRC, *VAAPI_VF, "-c:v", "h264_vaapi", "-g", "120", "-rc_mode", "CQP", "-qp", "26",
    ],
    (Codec.LIBX265, BitrateMode.VBR): [
        "-i", SRC, "-c:v", "libx265", *X26X, "-crf", "26", "-maxrate", "12000k", "-bufsize", "12000k",
    ],
    (Codec.LIBX264, BitrateMode.CQP): ["-i", SRC, "-c:v", "libx264", *X26X, "-qp", "26"],
}  # fmt: skip


def config(codec: Codec, mode: BitrateMode = BitrateMode.VBR, **transcoding: Any) -> Any:
    return parse_config(
        {
            "cameras": {"cam1": {"device": "/dev/video0"}},
            "encoding": {"bitrate_mode": mode.value},
            "transcoding": {"enabled": True, "codec": codec.value, "preset": "slow", "quality": 26, **transcoding},
        }
    )


@pytest.mark.parametrize(("codec", "mode"), list(TRANSCODE_GOLDENS), ids=str)
def test_golden_transcode(codec: Codec, mode: BitrateMode) -> None:
    argv, env = build_transcode_command(config(codec, mode), Path(SRC), Path(TMP), Container.MKV, "ffmpeg")
    assert list(argv) == [*GLOBAL, *TRANSCODE_GOLDENS[codec, mode], *OUTPUT, *MKV]
    hardware = codec in (Codec.HEVC_QSV, Codec.H264_QSV, Codec.HEVC_VAAPI, Codec.H264_VAAPI)
    assert env == ({"LIBVA_DRIVER_NAME": "iHD"} if hardware else {})


def test_mp4_segments_are_rewritten_as_mp4_with_the_index_up_front() -> None:
    argv, _ = build_transcode_command(config(Codec.LIBX265), Path(SRC), Path(TMP), Container.MP4, "ffmpeg")
    assert argv[-5:] == ("-f", "mp4", "-movflags", "+faststart", TMP)


def test_transcoding_preset_and_quality_not_the_recording_ones() -> None:
    cfg = parse_config(
        {
            "cameras": {"cam1": {"device": "/dev/video0"}},
            "encoding": {"codec": "h264_qsv", "preset": "veryfast", "quality": 20},
            "transcoding": {"codec": "libx265", "preset": "veryslow", "quality": 30},
        }
    )
    argv = list(build_transcode_command(cfg, Path(SRC), Path(TMP), Container.MKV, "ffmpeg")[0])
    assert argv[argv.index("-preset") + 1] == "veryslow"
    assert argv[argv.index("-crf") + 1] == "30"
    assert "veryfast" not in argv and "h264_qsv" not in argv


@pytest.mark.parametrize("codec", [Codec.LIBX265, Codec.LIBX264])
def test_real_ffmpeg_runs_the_software_argv(tmp_path: Path, codec: Codec) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8, seconds=1)
    out = tmp_path / "cam1" / f".{seg.name}.transcoding"
    argv, _env = build_transcode_command(config(codec, preset="ultrafast"), seg, out, Container.MKV, "ffmpeg")
    subprocess.run(argv, check=True, timeout=60)
    facts = probe(out)
    assert facts["ok"]
    assert facts["codec"] == {Codec.LIBX265: "hevc", Codec.LIBX264: "h264"}[codec]
    assert facts["frames"] == probe(seg)["frames"]

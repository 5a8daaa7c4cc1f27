"""FFmpeg arguments as tables: input per source kind, encoder per codec, segment output per container.

Each table value is a tuple of fragments; a fragment is an argv list whose `{placeholders}` are filled
from typed config. A fragment naming a value that is None (not configured) is left out whole, so
optional flags need no if-chains. The command is built once per camera; the supervisor only runs it.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recorder.config import BitrateMode, CameraConfig, Codec, Config, Container, SourceKind
from recorder.domain.input_formats import FFMPEG_INPUT_FORMAT
from recorder.footage.segments import NAME_TIMEZONE_ENV, output_pattern

Fragment = tuple[str, ...]

# FFmpeg writes completed-segment entries to this inherited descriptor; the supervisor maps its pipe
# onto it when spawning, so the argv stays a constant built from config alone.
SEGMENT_LIST_FD = 3

GLOBAL_ARGS: tuple[Fragment, ...] = (
    ("-hide_banner", "-nostdin", "-nostats"),
    # `level+` prefixes each line with its severity, which the stderr classifier and logs use.
    ("-loglevel", "level+warning"),
    # Machine-readable progress once a second on stdout drives the stall watchdog and the metrics.
    ("-progress", "pipe:1", "-stats_period", "1"),
    # Never overwrite: the output name is a strftime pattern, the supervisor keeps names unique.
    ("-n",),
)

# Per source kind, before `-i`.
INPUT_ARGS: Mapping[SourceKind, tuple[Fragment, ...]] = {
    SourceKind.DEVICE: (
        ("-f", "v4l2"),
        ("-thread_queue_size", "512"),
        ("-input_format", "{v4l2_input_format}"),
        ("-video_size", "{resolution}"),
        ("-framerate", "{framerate}"),
        ("-i", "{device_node}"),
    ),
    # Preceded by the scheme's own options (URL_SCHEME_ARGS).
    SourceKind.URL: (("-i", "{location}"),),
    # A recorded clip replayed in real time, forever: the cheapest stand-in for a camera.
    SourceKind.FILE: (
        ("-re", "-stream_loop", "-1"),
        ("-i", "{location}"),
    ),
    SourceKind.TEST_PATTERN: (
        ("-re", "-f", "lavfi"),
        # The camera's location, when it has one, is its own lavfi graph (the demo's named patterns).
        ("-i", "{test_pattern}"),
    ),
}

_HTTP_ARGS: tuple[Fragment, ...] = (
    ("-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_delay_max", "5"),
    ("-rw_timeout", "10000000"),
)
# Input options per URL scheme, before the URL source's own.
URL_SCHEME_ARGS: Mapping[str, tuple[Fragment, ...]] = {
    # TCP interleaving survives lossy Wi-Fi; the socket timeout (µs) turns a dead camera into an exit.
    "rtsp": (("-rtsp_transport", "tcp"), ("-timeout", "10000000")),
    "rtsps": (("-rtsp_transport", "tcp"), ("-timeout", "10000000")),
    "http": _HTTP_ARGS,
    "https": _HTTP_ARGS,
    "udp": (("-timeout", "10000000"), ("-fifo_size", "1000000", "-overrun_nonfatal", "1")),
}


_QSV_HW: tuple[Fragment, ...] = (("-init_hw_device", "qsv=hw"), ("-filter_hw_device", "hw"))
_VAAPI_HW: tuple[Fragment, ...] = (("-vaapi_device", "{hw_device}"),)


@dataclass(frozen=True)
class EncoderPreset:
    """How one encoder is driven: hardware set-up before the input, filters and codec options after."""

    hw_init: tuple[Fragment, ...] = ()
    video_filter: str | None = None
    codec_args: tuple[Fragment, ...] = ()
    rate_control: Mapping[BitrateMode, tuple[Fragment, ...]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


_QSV_QUALITY: Fragment = ("-global_quality", "{quality}")
_QSV_VBR: Fragment = ("-b:v", "{target_bitrate}k", "-maxrate", "{max_bitrate}k")
_QSV_CBR: Fragment = ("-b:v", "{target_bitrate}k", "-maxrate", "{target_bitrate}k", "-minrate", "{target_bitrate}k")
# A constant QP excludes look-ahead ("More than one of: constant qscale, lookahead"), and
# -global_quality would override the QP, so CQP gets -q:v alone.
_HEVC_QSV_RATE: Mapping[BitrateMode, tuple[Fragment, ...]] = {
    BitrateMode.VBR: (_QSV_QUALITY, _QSV_VBR),
    BitrateMode.CBR: (_QSV_QUALITY, _QSV_CBR),
    BitrateMode.CQP: (("-q:v", "{quality}"),),
}
# Only h264_qsv has look-ahead; with CBR QSV would pick its look-ahead mode instead, so VBR only.
_H264_QSV_RATE: Mapping[BitrateMode, tuple[Fragment, ...]] = {
    **_HEVC_QSV_RATE,
    BitrateMode.VBR: (_QSV_QUALITY, ("-look_ahead", "{lookahead}"), _QSV_VBR),
}
_VAAPI_RATE: Mapping[BitrateMode, tuple[Fragment, ...]] = {
    BitrateMode.VBR: (("-rc_mode", "VBR", "-b:v", "{target_bitrate}k", "-maxrate", "{max_bitrate}k"),),
    BitrateMode.CBR: (("-rc_mode", "CBR", "-b:v", "{target_bitrate}k"),),
    BitrateMode.CQP: (("-rc_mode", "CQP", "-qp", "{quality}"),),
}
_X26X_RATE: Mapping[BitrateMode, tuple[Fragment, ...]] = {
    BitrateMode.VBR: (("-crf", "{quality}", "-maxrate", "{max_bitrate}k", "-bufsize", "{max_bitrate}k"),),
    BitrateMode.CBR: (("-b:v", "{target_bitrate}k", "-maxrate", "{target_bitrate}k", "-bufsize", "{target_bitrate}k"),),
    BitrateMode.CQP: (("-qp", "{quality}"),),
}
_QSV_CODEC_ARGS: tuple[Fragment, ...] = (
    ("-preset", "{preset}"),
    ("-g", "{gop_size}"),
    ("-refs", "{ref_frames}"),
)
_X26X_CODEC_ARGS: tuple[Fragment, ...] = (
    ("-preset", "{preset}"),
    ("-g", "{gop_size}"),
    ("-refs", "{ref_frames}"),
    ("-pix_fmt", "yuv420p"),
)

_LIBVA_ENV: Mapping[str, str] = {"LIBVA_DRIVER_NAME": "{vaapi_driver}"}


def _qsv(codec: Codec, rate_control: Mapping[BitrateMode, tuple[Fragment, ...]]) -> EncoderPreset:
    return EncoderPreset(
        hw_init=_QSV_HW,
        video_filter="hwupload=extra_hw_frames={extra_hw_frames},format=qsv",
        codec_args=(("-c:v", codec.value), *_QSV_CODEC_ARGS),
        rate_control=rate_control,
        env=_LIBVA_ENV,
    )


def _vaapi(codec: Codec) -> EncoderPreset:
    return EncoderPreset(
        hw_init=_VAAPI_HW,
        video_filter="format=nv12,hwupload",
        codec_args=(("-c:v", codec.value), ("-g", "{gop_size}")),
        rate_control=_VAAPI_RATE,
        env=_LIBVA_ENV,
    )


ENCODER_PRESETS: Mapping[Codec, EncoderPreset] = {
    Codec.COPY: EncoderPreset(codec_args=(("-c:v", "copy"),)),
    Codec.H264_QSV: _qsv(Codec.H264_QSV, _H264_QSV_RATE),
    Codec.HEVC_QSV: _qsv(Codec.HEVC_QSV, _HEVC_QSV_RATE),
    Codec.H264_VAAPI: _vaapi(Codec.H264_VAAPI),
    Codec.HEVC_VAAPI: _vaapi(Codec.HEVC_VAAPI),
    Codec.LIBX264: EncoderPreset(codec_args=(("-c:v", "libx264"), *_X26X_CODEC_ARGS), rate_control=_X26X_RATE),
    Codec.LIBX265: EncoderPreset(codec_args=(("-c:v", "libx265"), *_X26X_CODEC_ARGS), rate_control=_X26X_RATE),
}

# Live test patterns are encoded as cheaply as possible, with one keyframe a second so that a killed
# FFmpeg loses at most a second.
TEST_PATTERN_ENCODING: tuple[Fragment, ...] = (
    ("-c:v", "libx264"),
    ("-preset", "ultrafast"),
    ("-tune", "zerolatency"),
    ("-g", "{framerate}"),
    ("-pix_fmt", "yuv420p"),
)

# Sources that deliver raw frames: stream copy of those would write uncompressed video, so for them
# `copy` means this encoder (a test pattern is "encoded live").
RAW_SOURCE_ENCODERS: Mapping[SourceKind, tuple[Codec, EncoderPreset]] = {
    SourceKind.TEST_PATTERN: (Codec.LIBX264, EncoderPreset(codec_args=TEST_PATTERN_ENCODING)),
}

# Common to every segment output: one video stream, timestamps from zero in each file, names by
# wall-clock time, completed segments reported on SEGMENT_LIST_FD.
SEGMENT_ARGS: tuple[Fragment, ...] = (
    ("-map", "0:v:0"),
    ("-an", "-sn", "-dn"),
    ("-f", "segment"),
    ("-segment_time", "{segment_time}"),
    ("-segment_atclocktime", "{align_segments}"),
    ("-reset_timestamps", "1"),
    ("-strftime", "1"),
    ("-segment_list", f"pipe:{SEGMENT_LIST_FD}", "-segment_list_type", "csv"),
)

# Per container: how often the muxer writes what it holds, which bounds what a crash loses. The
# segment muxer's own -flush_packets does not reach the per-file muxer, so it is passed in its options:
# without it a low-bitrate camera sits in a 32 KiB buffer for seconds.
CONTAINER_ARGS: Mapping[Container, tuple[Fragment, ...]] = {
    # Matroska buffers a whole cluster in memory: one-second clusters bound a crash's loss to ~1 s.
    Container.MKV: (
        ("-segment_format", "matroska"),
        ("-segment_format_options", "cluster_time_limit=1000:flush_packets={flush_packets}"),
    ),
    # A plain MP4 killed mid-segment is unreadable (its index is written last); fragmented MP4 is
    # readable up to its last fragment, cut at every keyframe and at least every second.
    Container.MP4: (
        ("-segment_format", "mp4"),
        (
            "-segment_format_options",
            "movflags=+frag_keyframe+empty_moov+default_base_moof{extra_movflags}:frag_duration=1000000"
            ":flush_packets={flush_packets}",
        ),
    ),
}


@dataclass(frozen=True)
class FFmpegCommand:
    """Everything needed to start one camera's FFmpeg: argv, extra environment, output folder."""

    camera_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    output_dir: Path
    codec: Codec  # the encoder that actually runs (copy of a raw source becomes an encoder)
    name_suffix: int = 0  # the `-N` of its segment names (segments.SEGMENT_NAME_RE); 0 but after a clock step

    def shell(self) -> str:
        """The command as an operator would paste it into a shell."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


class _Values(dict[str, str | None]):
    """Placeholder values; unknown names are a programming error, caught by the golden tests."""

    def __missing__(self, key: str) -> str:
        raise KeyError(f"no value for placeholder {{{key}}}")


def _placeholders(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def _expand(fragments: tuple[Fragment, ...], values: _Values) -> list[str]:
    argv: list[str] = []
    for fragment in fragments:
        names = [name for part in fragment for name in _placeholders(part)]
        if any(values[name] is None for name in names):
            continue
        argv.extend(part.format_map(values) for part in fragment)
    return argv


def _encoder_argv(
    ffmpeg: str,
    preset: EncoderPreset,
    bitrate_mode: BitrateMode,
    values: _Values,
    *,
    global_args: tuple[Fragment, ...],
    input_args: tuple[Fragment, ...],
    output_args: tuple[Fragment, ...],
) -> list[str]:
    """FFmpeg, its input, then the encoder preset's filter, codec and rate control, then the output options:
    recording and night transcoding drive an encoder the same way."""
    argv = [ffmpeg, *_expand(global_args, values), *_expand(preset.hw_init, values), *_expand(input_args, values)]
    if preset.video_filter:
        argv += ["-vf", preset.video_filter.format_map(values)]
    argv += _expand(preset.codec_args, values)
    argv += _expand(preset.rate_control.get(bitrate_mode, ()), values)
    return argv + _expand(output_args, values)


# Movflags a user's own are stripped of: segments are always fragmented, and faststart would undo that.
ALWAYS_SET_MOVFLAGS = ("faststart", "frag_keyframe")


def _extra_movflags(movflags: str | None) -> str:
    """The user's own movflags that still make sense for fragmented output."""
    if not movflags:
        return ""
    keep = [f for f in movflags.replace("+", " ").split() if f and f not in ALWAYS_SET_MOVFLAGS]
    return "".join("+" + f for f in keep)


def encoder_preset(camera: CameraConfig, config: Config) -> tuple[Codec, EncoderPreset]:
    """The encoder that runs: `copy` of a source that only yields raw frames means encoding it."""
    codec = config.encoding.codec
    if codec is Codec.COPY and camera.source in RAW_SOURCE_ENCODERS:
        return RAW_SOURCE_ENCODERS[camera.source]
    return codec, ENCODER_PRESETS[codec]


def _encoder_values(config: Config, *, preset: str, quality: int) -> dict[str, str | None]:
    """The encoder presets' placeholders; rate control, GOP and hardware come from `encoding` for both roles."""
    enc = config.encoding
    return {
        "preset": preset,
        "quality": str(quality),
        "target_bitrate": str(enc.target_bitrate),
        "max_bitrate": str(enc.max_bitrate),
        "gop_size": str(enc.gop_size),
        "ref_frames": str(enc.ref_frames),
        "lookahead": str(int(enc.lookahead)),
        "extra_hw_frames": str(enc.extra_hw_frames),
        "hw_device": config.system.hw_device,
        "vaapi_driver": config.vaapi_driver,
    }


def build_command(
    camera: CameraConfig, config: Config, ffmpeg: str, device_node: str | None = None, name_suffix: int = 0
) -> FFmpegCommand:
    """The FFmpeg command recording `camera`, from typed config alone (`name_suffix`: see SEGMENT_NAME_RE)."""
    enc = config.encoding
    rec = config.recording
    codec, preset = encoder_preset(camera, config)
    scheme = camera.location.split("://", 1)[0].lower() if camera.source is SourceKind.URL else ""
    values = _Values(
        location=camera.location,
        test_pattern=camera.location or f"testsrc2=size={camera.resolution}:rate={camera.framerate}",
        device_node=device_node or camera.location or None,
        v4l2_input_format=FFMPEG_INPUT_FORMAT.get(camera.input_format) if camera.input_format else None,
        resolution=str(camera.resolution) if camera.resolution else None,
        framerate=str(camera.framerate) if camera.framerate else None,
        **_encoder_values(config, preset=enc.preset, quality=enc.quality),
        segment_time=str(rec.segment_time),
        align_segments="1" if rec.align_segments else None,
        flush_packets=str(int(rec.flush_packets)),
        extra_movflags=_extra_movflags(rec.movflags),
    )
    input_fragments = URL_SCHEME_ARGS.get(scheme, ()) + INPUT_ARGS[camera.source]
    argv = _encoder_argv(
        ffmpeg, preset, enc.bitrate_mode, values,
        global_args=GLOBAL_ARGS, input_args=input_fragments,
        output_args=SEGMENT_ARGS + CONTAINER_ARGS[rec.container_format],
    )  # fmt: skip
    output_dir = rec.base_directory / camera.id
    argv.append(str(output_dir / output_pattern(camera, rec.container_format, name_suffix)))
    env = {**NAME_TIMEZONE_ENV, **{key: value.format_map(values) for key, value in preset.env.items()}}
    return FFmpegCommand(camera.id, tuple(argv), env, output_dir, codec, name_suffix)


# Night transcoding (recorder/transcoding/): one finished segment re-encoded file to file with the encoder
# presets above, so QSV and VA-API are driven exactly as when recording. The muxer is named because the
# temporary output's suffix (`.transcoding`) tells FFmpeg nothing.
TRANSCODE_GLOBAL_ARGS: tuple[Fragment, ...] = (
    ("-hide_banner", "-nostdin", "-nostats"),
    ("-loglevel", "level+error"),
    # The output is our own temporary file, removed before each attempt; overwriting it is intended.
    ("-y",),
)
TRANSCODE_INPUT_ARGS: tuple[Fragment, ...] = (("-i", "{source}"),)
# Every frame kept with its own timestamp: the verifier compares frame counts and durations.
TRANSCODE_OUTPUT_ARGS: tuple[Fragment, ...] = (("-map", "0:v:0"), ("-an", "-sn", "-dn"), ("-fps_mode", "passthrough"))
TRANSCODE_MUXER_ARGS: Mapping[Container, tuple[Fragment, ...]] = {
    Container.MKV: (("-f", "matroska"),),
    # Written once and complete (the crash safety is the temporary name): a plain MP4, index up front.
    Container.MP4: (("-f", "mp4"), ("-movflags", "+faststart")),
}


def build_transcode_command(
    config: Config, source: Path, output: Path, container: Container, ffmpeg: str
) -> tuple[tuple[str, ...], dict[str, str]]:
    """argv and extra environment re-encoding `source` into `output` with transcoding's codec, preset, quality.

    Rate control, GOP, references, look-ahead and hardware frames come from the encoding section, as when
    recording; only the encoder and its preset and quality are transcoding's own.
    """
    tc = config.transcoding
    enc = config.encoding
    preset = ENCODER_PRESETS[tc.codec]
    values = _Values(
        source=str(source),
        **_encoder_values(config, preset=tc.preset, quality=tc.quality),
    )
    argv = _encoder_argv(
        ffmpeg, preset, enc.bitrate_mode, values,
        global_args=TRANSCODE_GLOBAL_ARGS, input_args=TRANSCODE_INPUT_ARGS,
        output_args=TRANSCODE_OUTPUT_ARGS + TRANSCODE_MUXER_ARGS[container],
    )  # fmt: skip
    argv.append(str(output))
    env = {key: value.format_map(values) for key, value in preset.env.items()}
    return tuple(argv), env

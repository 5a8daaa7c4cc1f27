"""Tests for recorder.ffmpeg.errors against real FFmpeg stderr as published (tests/fixtures/v4l2-corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.metrics import RESTART_REASONS
from recorder.ffmpeg.errors import StderrReason, classify, classify_line, restart_reason, scrub

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO / "tests" / "fixtures" / "v4l2-corpus"  # published outputs; README.md there names each source


def stderr_lines(name: str) -> list[str]:
    """Return the FFmpeg output lines of one corpus file, without its '# ' header."""
    header, separator, body = (CORPUS / name).read_text(encoding="utf-8").partition("# ---\n")
    assert separator, f"{name}: no '# ---' line"
    assert all(line.startswith("#") for line in header.splitlines())
    return body.splitlines()


EXPECTED = {
    # "Cannot open video device /dev/video0: No such file or directory": the node is not there.
    "ffmpeg-cannot-open-video-device.txt": StderrReason.DEVICE_GONE,
    # Short buffers ("contains 205752 bytes, but 614400 were expected") and "Cannot read video frame."
    "ffmpeg-dequeued-buffer-size-mismatch-dashcast.txt": StderrReason.CORRUPT_DATA,
    "ffmpeg-dequeued-corrupted-data-mynteye.txt": StderrReason.CORRUPT_DATA,
    # "[error] /dev/video0: Device or resource busy" under a homebridge log prefix.
    "ffmpeg-device-busy-homebridge.txt": StderrReason.DEVICE_BUSY,
    "ffmpeg-device-busy-short.txt": StderrReason.DEVICE_BUSY,
    # 640x480 -> 1920x1080; the later time-per-frame complaints and Ctrl-C do not change that.
    "ffmpeg-driver-changed-size-kinect2.txt": StderrReason.SIZE_CHANGED,
    # Old libav prefix "[video4linux2 @ ...]": 640x480 -> 720x480, then a hang and ^C.
    "ffmpeg-driver-changed-size-libav-md80.txt": StderrReason.SIZE_CHANGED,
    # Timestamp warnings and a normal summary: nothing a restart reason can name.
    "ffmpeg-non-monotonous-dts-video2x.txt": StderrReason.UNKNOWN,
    "ffmpeg-progress-blocks.txt": StderrReason.UNKNOWN,
}


def test_every_corpus_stderr_has_an_expected_reason() -> None:
    assert CORPUS.is_dir(), f"corpus fixtures missing at {CORPUS}"
    assert {p.name for p in CORPUS.glob("ffmpeg-*.txt")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_classify_corpus(name: str) -> None:
    assert classify(stderr_lines(name)) == EXPECTED[name]


def test_fatal_reason_beats_earlier_corrupt_data() -> None:
    lines = [
        *stderr_lines("ffmpeg-dequeued-buffer-size-mismatch-dashcast.txt"),
        *stderr_lines("ffmpeg-cannot-open-video-device.txt"),
    ]
    assert classify(lines) == StderrReason.DEVICE_GONE


def test_fatal_reason_beats_later_warnings() -> None:
    lines = [*stderr_lines("ffmpeg-device-busy-short.txt"), *stderr_lines("ffmpeg-dequeued-corrupted-data-mynteye.txt")]
    assert classify(lines) == StderrReason.DEVICE_BUSY


def test_last_fatal_reason_wins() -> None:
    busy = stderr_lines("ffmpeg-device-busy-short.txt")
    gone = stderr_lines("ffmpeg-cannot-open-video-device.txt")
    assert classify([*busy, *gone]) == StderrReason.DEVICE_GONE
    assert classify([*gone, *busy]) == StderrReason.DEVICE_BUSY


def test_size_change_explains_later_short_buffers() -> None:
    changed = stderr_lines("ffmpeg-driver-changed-size-libav-md80.txt")
    short = stderr_lines("ffmpeg-dequeued-buffer-size-mismatch-dashcast.txt")
    assert classify([*changed, *short]) == StderrReason.SIZE_CHANGED


def test_classify_accepts_any_iterable_and_empty_input() -> None:
    assert classify(iter(stderr_lines("ffmpeg-device-busy-short.txt"))) == StderrReason.DEVICE_BUSY
    assert classify([]) == StderrReason.UNKNOWN


# FFmpeg message shapes (libavdevice/v4l2.c, fftools) the corpus has no capture of.
@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[video4linux2,v4l2 @ 0x5581] ioctl(VIDIOC_DQBUF): No such device", StderrReason.DEVICE_GONE),
        (
            "[video4linux2,v4l2 @ 0x5581] Cannot open video device /dev/video0: Input/output error",
            StderrReason.DEVICE_GONE,
        ),
        (
            "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0: No such file or directory",
            StderrReason.DEVICE_GONE,
        ),
        (
            "[video4linux2,v4l2 @ 0x5581] Cannot open video device /dev/video0: Permission denied",
            StderrReason.PERMISSION,
        ),
        ("/recordings/cam1/cam1_20240101_000000.mkv: Permission denied", StderrReason.PERMISSION),
        (
            "[video4linux2,v4l2 @ 0x5581] Cannot open video device /dev/video0: Device or resource busy",
            StderrReason.DEVICE_BUSY,
        ),
        ("[video4linux2,v4l2 @ 0x5581] ioctl(VIDIOC_STREAMON): No space left on device", StderrReason.DEVICE_BUSY),
        ("[matroska @ 0x55d1] av_interleaved_write_frame(): No space left on device", StderrReason.DISK_FULL),
        ("[segment @ 0x55d1] Failed to open segment 'cam1_20240301_120000.mkv'", StderrReason.UNKNOWN),
        ("Error writing trailer of /rec/cam1/cam1_20240301_120000.mkv: Disk quota exceeded", StderrReason.DISK_FULL),
        ("Unrecognized option 'segment_tme'.", StderrReason.BAD_OPTION),
        ("Error splitting the argument list: Option not found", StderrReason.BAD_OPTION),
        ("[video4linux2,v4l2 @ 0x5581] ioctl(VIDIOC_S_FMT): Invalid argument", StderrReason.BAD_OPTION),
        ("Unknown encoder 'hevc_qsv'", StderrReason.BAD_OPTION),
        (
            "[video4linux2,v4l2 @ 0x5581] Cannot find a proper format for codec 'h264' (id 27), "
            "pixel format 'none' (id -1)",
            StderrReason.BAD_OPTION,
        ),
        ("[video4linux2,v4l2 @ 0x5581] Not a video capture device.", StderrReason.BAD_OPTION),
        # Undecodable input is bad data from the source, not a bad command line.
        ("/dev/video0: Invalid data found when processing input", StderrReason.CORRUPT_DATA),
        # A missing output folder is not a vanished camera.
        ("/recordings/cam1/cam1_20240101_000000.mkv: No such file or directory", StderrReason.UNKNOWN),
        (
            "frame=  390 fps=0.0 q=-1.0 Lsize=    5642kB time=00:00:15.59 bitrate=2964.5kbits/s speed=34.4x",
            StderrReason.UNKNOWN,
        ),
    ],
)
def test_classify_line(line: str, reason: StderrReason) -> None:
    assert classify_line(line) == reason


@pytest.mark.parametrize(
    ("reason", "exit_code", "signalled", "restart"),
    [
        (StderrReason.DEVICE_GONE, 1, False, "device_gone"),
        (StderrReason.DEVICE_BUSY, 1, False, "device_busy"),
        (StderrReason.PERMISSION, 1, False, "config"),
        (StderrReason.BAD_OPTION, 8, False, "config"),
        (StderrReason.SIZE_CHANGED, 0, False, "exited"),
        (StderrReason.SIZE_CHANGED, 255, False, "crashed"),
        (StderrReason.CORRUPT_DATA, 0, False, "exited"),
        (StderrReason.CORRUPT_DATA, None, True, "crashed"),
        (StderrReason.DISK_FULL, 1, False, "disk_full"),
        (StderrReason.UNKNOWN, 0, False, "exited"),
        (StderrReason.UNKNOWN, 0, True, "crashed"),
        (StderrReason.UNKNOWN, -11, False, "crashed"),
        (StderrReason.UNKNOWN, None, False, "crashed"),
    ],
)
def test_restart_reason(reason: StderrReason, exit_code: int | None, signalled: bool, restart: str) -> None:
    assert restart_reason(reason, exit_code=exit_code, signalled=signalled) == restart


def test_restart_reasons_stay_within_the_metric_label_set() -> None:
    labels = set(RESTART_REASONS)
    for reason in StderrReason:
        for exit_code in (0, 1, None):
            for signalled in (False, True):
                assert restart_reason(reason, exit_code=exit_code, signalled=signalled) in labels


def test_reason_values() -> None:
    assert [r.value for r in StderrReason] == [
        "device_gone",
        "device_busy",
        "permission",
        "bad_option",
        "size_changed",
        "corrupt_data",
        "disk_full",
        "unknown",
    ]


@pytest.mark.parametrize(
    ("line", "scrubbed"),
    [
        (
            "Input #0, rtsp, from 'rtsp://admin:hunter2@192.168.1.64:554/Streaming/Channels/101':",
            "Input #0, rtsp, from 'rtsp://***:***@192.168.1.64:554/Streaming/Channels/101':",
        ),
        ("DESCRIBE failed: 401 rtsp://viewer@cam.lan/live", "DESCRIBE failed: 401 rtsp://***@cam.lan/live"),
        # A password containing "@" is masked whole, up to the last "@" before the host.
        ("rtsp://admin:p@ss@10.0.0.2/h264", "rtsp://***:***@10.0.0.2/h264"),
        (
            "http://cam.lan/video.cgi?user=admin&password=hunter2&res=hd",
            "http://cam.lan/video.cgi?user=***&password=***&res=hd",
        ),
        ("rtsp://u1:p1@a.lan/1 and rtsp://u2:p2@b.lan/2", "rtsp://***:***@a.lan/1 and rtsp://***:***@b.lan/2"),
        # Nothing secret: unchanged.
        ("rtsp://cam.lan:554/stream?channel=1", "rtsp://cam.lan:554/stream?channel=1"),
        ("/dev/video0: Device or resource busy", "/dev/video0: Device or resource busy"),
    ],
)
def test_scrub(line: str, scrubbed: str) -> None:
    assert scrub(line) == scrubbed


def test_scrub_leaves_corpus_stderr_unchanged() -> None:
    for name in EXPECTED:
        for line in stderr_lines(name):
            assert scrub(line) == line

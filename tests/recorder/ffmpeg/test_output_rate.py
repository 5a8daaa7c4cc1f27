"""`camera_recorder_output_bytes_per_second` from bytes actually written: FFmpeg's own bitrate is N/A
with the segment muxer, so the rate is measured from the open segment's growth."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from conftest import wait_for
from daemon_harness import Daemon, write_config

from recorder.ffmpeg.progress import OutputRateMeter, ProgressParser

# A few seconds of x264 at a size that writes tens of kB a second, a keyframe a second so it cuts 1 s segments.
FFMPEG_SEGMENTS = [
    "ffmpeg", "-v", "error", "-nostats", "-progress", "pipe:1", "-re", "-f", "lavfi",
    "-i", "testsrc2=size=320x240:rate=25", "-t", "5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
    "-f", "segment", "-segment_time", "1", "-reset_timestamps", "1",
]  # fmt: skip


def test_ffmpeg_reports_no_bitrate_with_the_segment_muxer_but_the_meter_measures_the_files(tmp_path: Path) -> None:
    out = tmp_path / "cam1"
    out.mkdir()
    ffmpeg = subprocess.Popen(
        [*FFMPEG_SEGMENTS, str(out / "seg_%03d.mkv")], stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    plain, metered = ProgressParser(), ProgressParser(OutputRateMeter(ffmpeg.pid, out))
    start = time.monotonic()
    reported, measured = [], []
    assert ffmpeg.stdout is not None
    for line in ffmpeg.stdout:
        block = plain.feed(line)
        if block is not None:
            reported.append(block.bitrate_bits_per_second)
        block = metered.feed(line)
        if block is not None and not block.ended:
            measured.append((time.monotonic() - start, block.bitrate_bits_per_second / 8))
    assert ffmpeg.wait(30) == 0
    written = sum(p.stat().st_size for p in out.iterdir())
    assert len(list(out.iterdir())) >= 3, "several segments, so the meter crossed segment boundaries"
    assert set(reported) == {0.0}, "FFmpeg's own bitrate is N/A with -f segment (if this fails, use it)"
    late = [rate for at, rate in measured if at > 2.0]
    assert late and min(late) > 0
    # Over the run the measured rate is the bytes that landed in the files per second, within reason.
    average = written / 5.0
    assert 0.3 * average < sum(late) / len(late) < 3 * average, (late, average)


def test_the_meter_counts_a_finished_segment_and_its_successor(tmp_path: Path) -> None:
    """Growth across a segment change: the old file's last bytes and the new file from zero."""
    out = tmp_path / "cam1"
    out.mkdir()
    now = [0.0]
    holder = subprocess.Popen(["sleep", "30"])  # a process whose fds we stage through a fake /proc
    fake_proc = tmp_path / "proc"
    fd_dir = fake_proc / str(holder.pid) / "fd"
    fd_dir.mkdir(parents=True)
    try:
        meter = OutputRateMeter(
            holder.pid, out, window_seconds=10, sample_every=0, clock=lambda: now[0], proc=fake_proc
        )
        first, second = out / "a.mkv", out / "b.mkv"
        first.write_bytes(b"x" * 1000)
        (fd_dir / "5").symlink_to(first)
        assert meter.sample() == 0.0  # the baseline
        now[0] = 1.0
        first.write_bytes(b"x" * 3000)
        assert meter.sample() == 2000.0
        now[0] = 2.0
        first.write_bytes(b"x" * 3500)  # its last 500 bytes, then FFmpeg opens the next one
        second.write_bytes(b"x" * 1500)
        (fd_dir / "5").unlink()
        (fd_dir / "6").symlink_to(second)
        assert meter.sample() == (2000 + 500 + 1500) / 2.0
        now[0] = 3.0
        (fd_dir / "6").unlink()  # FFmpeg ended: nothing more is written
        assert meter.sample() == 4000 / 3.0
    finally:
        holder.kill()
        holder.wait()


def test_the_meter_looks_at_most_every_sample_every_and_lists_the_fds_only_when_the_segment_fd_moves(
    tmp_path: Path,
) -> None:
    """The cost cut: between samples a block carries the last rate while the same file is open; FFmpeg's next
    segment under the same descriptor is found with one readlink, and /proc/PID/fd is listed again only when
    that descriptor moves."""
    out = tmp_path / "cam1"
    out.mkdir()
    fd_dir = tmp_path / "proc" / "4242" / "fd"
    fd_dir.mkdir(parents=True)
    (fd_dir / "0").symlink_to("/dev/null")
    now = [0.0]
    meter = OutputRateMeter(4242, out, window_seconds=10, sample_every=2, clock=lambda: now[0], proc=tmp_path / "proc")
    first, second, third = out / "a.mkv", out / "b.mkv", out / "c.mkv"
    first.write_bytes(b"x" * 1000)
    (fd_dir / "5").symlink_to(first)
    assert meter.sample() == 0.0 and meter.scans == 1  # the baseline, found by listing the descriptors
    now[0] = 2.0
    first.write_bytes(b"x" * 3000)
    assert meter.sample() == 1000.0
    now[0] = 3.0
    first.write_bytes(b"x" * 9000)
    assert meter.sample() == 1000.0, "sooner than sample_every: the last rate, the file is not looked at"
    now[0] = 3.5
    second.write_bytes(b"x" * 1000)  # FFmpeg closed a.mkv at 9000 bytes and opened b.mkv under the same number
    (fd_dir / "5").unlink()
    (fd_dir / "5").symlink_to(second)
    assert meter.sample() == (2000 + 6000 + 1000) / 3.5, "another file: looked at at once, sample_every or not"
    assert meter.scans == 1, "the remembered descriptor led to the new segment: no listing"
    now[0] = 6.0
    third.write_bytes(b"x" * 500)  # the next one under another number: listed once more
    (fd_dir / "5").unlink()
    (fd_dir / "7").symlink_to(third)
    assert meter.sample() == (9000 + 500) / 6.0
    assert meter.scans == 2


def test_recording_shows_a_nonzero_output_rate_in_metrics(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml", tmp_path / "rec",
        cameras={"cam1": {"test_pattern": True, "resolution": "320x240", "framerate": 25}},
    )  # fmt: skip
    daemon = Daemon(config)
    try:
        rate = wait_for(
            lambda: (daemon.value("camera_recorder_output_bytes_per_second", camera="cam1") or 0) > 0
            and daemon.value("camera_recorder_output_bytes_per_second", camera="cam1"),
            timeout=20, what="a non-zero output rate while recording",
        )  # fmt: skip
        assert rate > 100, "a 320x240 test pattern writes far more than 100 B/s"
    finally:
        assert daemon.stop() == 0

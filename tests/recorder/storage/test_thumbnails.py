"""Camera pictures: the last keyframe of a finished segment, made once per segment, bounded in time and number."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from recorder.storage.thumbnails import THUMBNAIL_WIDTH, ThumbnailCache


def two_colour_segment(path: Path) -> Path:
    """3 s of red then 1 s of blue, a keyframe every second: the last keyframe is blue."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
         "-f", "lavfi", "-i", "color=c=red:size=640x360:rate=10:duration=3",
         "-f", "lavfi", "-i", "color=c=blue:size=640x360:rate=10:duration=1",
         "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def picture(jpeg: bytes) -> tuple[int, int, tuple[int, int, int]]:
    """Width, height and mean colour of a JPEG, as FFmpeg decodes it."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", "-i", "pipe:0"],
        input=jpeg, capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    width, height = (int(v) for v in probe.stdout.decode().strip().split(","))
    pixel = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-vf", "scale=1:1", "-f", "rawvideo",
         "-pix_fmt", "rgb24", "pipe:1"],
        input=jpeg, capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return width, height, (pixel[0], pixel[1], pixel[2])


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_colour_segment(tmp_path_factory.mktemp("seg") / "cam1_20261125_140000.mkv")


def test_the_picture_is_the_last_keyframe_scaled_to_480_wide(segment: Path) -> None:
    thumb = ThumbnailCache("ffmpeg").get("cam1", segment)
    assert thumb is not None and thumb.jpeg is not None, thumb
    assert thumb.jpeg[:2] == b"\xff\xd8"
    width, height, (red, green, blue) = picture(thumb.jpeg)
    assert (width, height) == (THUMBNAIL_WIDTH, 270)
    assert blue > 200 and red < 60, (red, green, blue)  # the blue end, not the red start


def test_made_once_per_segment(segment: Path, tmp_path: Path) -> None:
    cache = ThumbnailCache("ffmpeg")
    first = cache.get("cam1", segment)
    assert cache.get("cam1", segment) is first
    assert cache.generations == 1
    newer = two_colour_segment(tmp_path / "cam1_20261125_141000.mkv")
    made = cache.get("cam1", newer)
    assert made is not None and made.segment == newer.name and cache.generations == 2


def test_a_segment_without_a_picture_is_not_tried_again(tmp_path: Path) -> None:
    broken = tmp_path / "cam1_20261125_140000.mkv"
    broken.write_bytes(b"not a video" * 100)
    cache = ThumbnailCache("ffmpeg")
    thumb = cache.get("cam1", broken)
    assert thumb is not None and thumb.jpeg is None and thumb.error
    assert cache.get("cam1", broken) is thumb and cache.generations == 1


def test_a_slow_ffmpeg_is_cut_off_by_the_timeout(segment: Path) -> None:
    def too_slow(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    thumb = ThumbnailCache("ffmpeg", timeout=0.5, run=too_slow).get("cam1", segment)
    assert thumb is not None and thumb.jpeg is None and thumb.error == "FFmpeg took longer than 0.5 s"


def test_generations_are_bounded_in_number(segment: Path) -> None:
    release = threading.Event()
    running = 0
    most = 0
    lock = threading.Lock()

    def held(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1
        return subprocess.CompletedProcess(argv, 1, b"", b"held")

    cache = ThumbnailCache("ffmpeg", max_concurrent=2, run=held)
    threads = [threading.Thread(target=cache.get, args=(f"cam{i}", segment)) for i in range(5)]
    for thread in threads:
        thread.start()
    wait_for(lambda: running == 2, what="two generations to run")
    release.set()
    for thread in threads:
        thread.join(30)
    assert most == 2

"""/api/v1/export streams what its head promises: the clip's segments are held before the head goes out, so
retention deleting them mid-download changes nothing; a piece that cannot be read is named in the head and
its time is a gap; a range mixing HEVC and H.264 pieces is refused (409) with the boundary named."""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import probe, small_config, wait_for
from test_export_stream import noisy_segment

from exporter.server import ExporterServer
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools
from recorder.footage.segments import segment_file_name

SEGMENT_SECONDS = 4  # more than recordings.GAP_TOLERANCE_SECONDS: one missing is a gap
RATE = 10


def segment(base: Path, start: float, codec: str = "libx264") -> Path:
    path = base / "cam1" / segment_file_name("cam1", start)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
         "-i", f"testsrc2=size=160x120:rate={RATE}", "-t", str(SEGMENT_SECONDS), "-c:v", codec,
         "-preset", "ultrafast", "-g", str(RATE), "-pix_fmt", "yuv420p", *(
             ["-x265-params", "log-level=error"] if codec == "libx265" else []), str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def serve(base: Path) -> ExporterServer:
    config = small_config(
        base, cameras={"cam1": {"test_pattern": True}}, recording={"segment_time": SEGMENT_SECONDS},
        exporter={"listen_address": "127.0.0.1:0"},
    )  # fmt: skip
    recorder = Recorder(config, find_tools(config.system))
    recorder.storage.scan()
    server = ExporterServer(config.exporter, recorder)
    server.start()
    return server


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[ExporterServer, Path, float]]:
    base = tmp_path / "rec"
    t0 = float(int(time.time()) - 3600)
    for i in range(3):
        segment(base, t0 + i * SEGMENT_SECONDS)
    server = serve(base)
    try:
        yield server, base, t0
    finally:
        server.stop()


def ask(server: ExporterServer, t0: float) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", f"/api/v1/export?camera=cam1&from={t0:.0f}&to={t0 + 3 * SEGMENT_SECONDS:.0f}&format=mkv")
    return connection.getresponse()


def test_segments_deleted_while_the_clip_streams_are_still_in_it(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    t0 = float(int(time.time()) - 3600)
    # Noise, ~15 MB a segment: more than the pipe and socket buffers, so FFmpeg is still reading the first
    # piece, the others not yet opened by it, when retention deletes them all.
    for i in range(3):
        noisy_segment(base / "cam1" / segment_file_name("cam1", t0 + i * SEGMENT_SECONDS), SEGMENT_SECONDS)
    server = serve(base)
    try:
        answer = ask(server, t0)
        assert answer.status == 200
        assert answer.getheader("X-Recording-Gaps") == "none"
        assert answer.getheader("X-Recording-Damaged") == "none"
        for path in (base / "cam1").iterdir():
            path.unlink()
        clip = tmp_path / "clip.mkv"
        clip.write_bytes(answer.read())
        assert probe(clip)["frames"] == 3 * SEGMENT_SECONDS * 25  # noisy_segment films at 25 fps
        wait_for(lambda: server.operator.exports_free == 2, timeout=10, what="the export slot back")
    finally:
        server.stop()


def test_an_unreadable_piece_is_named_in_the_head_and_its_time_is_a_gap(
    exporter: tuple[ExporterServer, Path, float], tmp_path: Path
) -> None:
    server, base, t0 = exporter
    leftover = base / "cam1" / segment_file_name("cam1", t0 + SEGMENT_SECONDS)
    with leftover.open("r+b") as cut:  # a SIGKILL just after the cut: the header, no frame
        cut.truncate(570)
    answer = ask(server, t0)
    assert answer.status == 200
    assert answer.getheader("X-Recording-Damaged") == leftover.name
    assert answer.getheader("X-Recording-Gaps") != "none"
    clip = tmp_path / "clip.mkv"
    clip.write_bytes(answer.read())
    assert probe(clip)["frames"] == 2 * SEGMENT_SECONDS * RATE


def test_a_range_mixing_codecs_is_refused_naming_the_boundary(exporter: tuple[ExporterServer, Path, float]) -> None:
    server, base, t0 = exporter
    (base / "cam1" / segment_file_name("cam1", t0 + SEGMENT_SECONDS)).unlink()
    segment(base, t0 + SEGMENT_SECONDS, codec="libx265")  # the night transcoder's result, same name
    answer = ask(server, t0)
    body = answer.read().decode()
    assert answer.status == 409
    assert f"{segment_file_name('cam1', t0 + SEGMENT_SECONDS)} is hevc 160x120" in body
    assert server.operator.exports_free == 2

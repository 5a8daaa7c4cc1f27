"""Clip downloads streamed by the exporter's web server, in process, from real FFmpeg-recorded segments: the
chunked framing a real client parses, HEAD, a client leaving mid-clip stops FFmpeg and frees its export
slot, and neither slow downloads nor pictures being made hold up /metrics."""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import probe, small_config, wait_for

from exporter.routes.operator import EXPORT_POOL, MAX_CONCURRENT_EXPORTS
from exporter.server import ExporterServer
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools
from recorder.footage.segments import segment_file_name
from recorder.storage.thumbnails import ThumbnailCache

SEGMENT_SECONDS = 4
SLOW_READ_BYTES = 4096
SLOW_READ_PAUSE = 0.5  # the slow client's pace (8 kB/s), not a synchronisation


def noisy_segment(path: Path, seconds: int = SEGMENT_SECONDS) -> Path:
    """Lossless H.264 of noise: about 15 MB for 4 s, more than every buffer between FFmpeg and a client
    that reads nothing (pipe, the stream's 1 MiB, the kernel's socket buffers), so FFmpeg must wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi",
         "-i", "nullsrc=size=480x360:rate=25,geq=lum='random(1)*255':cb=128:cr=128", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-g", "25", "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExporterServer, float]]:
    """An exporter over two recorded segments of cam1 (the recorder itself does not run)."""
    base = tmp_path_factory.mktemp("rec")
    t0 = float(int(time.time()) - 3600)
    for start in (t0, t0 + SEGMENT_SECONDS):
        noisy_segment(base / "cam1" / segment_file_name("cam1", start))
    config = small_config(
        base,
        cameras={"cam1": {"test_pattern": True}},
        recording={"segment_time": SEGMENT_SECONDS},
        exporter={"listen_address": "127.0.0.1:0"},
    )
    recorder = Recorder(config, find_tools(config.system))
    recorder.storage.scan()
    server = ExporterServer(config.exporter, recorder)
    server.start()
    try:
        yield server, t0
    finally:
        server.stop()


def export_path(t0: float) -> str:
    return f"/api/v1/export?camera=cam1&from={t0:.0f}&to={t0 + SEGMENT_SECONDS:.0f}"


def export_ffmpegs() -> list[psutil.Process]:
    """FFmpeg processes cutting a clip for this test process's exporter."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any("pieces.ffconcat" in arg for arg in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def free_slots(server: ExporterServer) -> int:
    return server.operator.exports_free


def producers_waiting_for_room(server: ExporterServer) -> list[str]:
    """The pools of the streams waiting for their clients: the socket's buffer full, no next chunk read."""
    return [stream.pool for stream in list(server.web_server.streams) if stream.held()]


def waiting_for_room(server: ExporterServer, count: int = 1) -> bool:
    return len(producers_waiting_for_room(server)) >= count


class SlowReader(threading.Thread):
    """A download taking SLOW_READ_BYTES every SLOW_READ_PAUSE through a small receive buffer."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.received = 0
        self.finished = False
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                data = self.sock.recv(SLOW_READ_BYTES)
                if not data:
                    self.finished = True
                    return
                self.received += len(data)
                self.stop.wait(SLOW_READ_PAUSE)
        except OSError:
            pass

    def leave(self) -> None:
        self.stop.set()
        self.join(10)
        self.sock.close()


def test_a_clip_is_streamed_chunked_to_a_real_client(served: tuple[ExporterServer, float], tmp_path: Path) -> None:
    server, t0 = served
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        client.request("GET", export_path(t0))
        response = client.getresponse()
        assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Type") == "video/mp4" and response.getheader("Content-Length") is None
        assert response.getheader("X-Recording-Segments") == "1"
        clip = tmp_path / "clip.mp4"
        clip.write_bytes(response.read())
        # The connection goes on after the last chunk.
        client.request("GET", "/-/healthy")
        assert client.getresponse().read() == b"Healthy\n"
    finally:
        client.close()
    info = probe(clip)
    assert info["ok"] and info["codec"] == "h264" and 3.5 <= info["duration"] <= 4.5, info
    wait_for(lambda: free_slots(server) == MAX_CONCURRENT_EXPORTS, what="the export slot to be free")


def test_head_of_a_clip_starts_no_ffmpeg(served: tuple[ExporterServer, float]) -> None:
    server, t0 = served
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{export_path(t0)}", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.read() == b""
        assert response.headers["Content-Type"] == "video/mp4"
        assert "attachment; filename=" in response.headers["Content-Disposition"]
    assert export_ffmpegs() == [] and free_slots(server) == MAX_CONCURRENT_EXPORTS


def test_a_client_leaving_mid_clip_stops_ffmpeg_and_frees_the_slot(served: tuple[ExporterServer, float]) -> None:
    server, t0 = served
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET {export_path(t0)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_for(lambda: waiting_for_room(server), timeout=30, what="the clip's producer to wait for the client")
        # FFmpeg is held by the full pipe, not finished: the client's pace is the clip's pace.
        assert len(export_ffmpegs()) == 1 and free_slots(server) == MAX_CONCURRENT_EXPORTS - 1
    wait_for(lambda: export_ffmpegs() == [], what="FFmpeg to be stopped once the client left")
    wait_for(lambda: free_slots(server) == MAX_CONCURRENT_EXPORTS, what="the export slot to be free")


def test_scrapes_answer_while_clips_stream_to_slow_clients(served: tuple[ExporterServer, float]) -> None:
    server, t0 = served
    url = f"http://127.0.0.1:{server.port}"
    readers = [SlowReader(server.port, export_path(t0)) for _ in range(MAX_CONCURRENT_EXPORTS)]
    for reader in readers:
        reader.start()
    try:
        wait_for(
            lambda: waiting_for_room(server, MAX_CONCURRENT_EXPORTS), timeout=30, what="both clips to wait for readers"
        )
        # In a pool of their own: however many threads clips hold, none is a scraper's.
        assert producers_waiting_for_room(server) == [EXPORT_POOL] * MAX_CONCURRENT_EXPORTS
        took = []
        for _ in range(10):
            began = time.monotonic()
            with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
                assert response.status == 200 and b"camera_recorder_build_info" in response.read()
            took.append(time.monotonic() - began)
        # Every slot is taken: a third clip is told so at once instead of queueing behind the two.
        with pytest.raises(urllib.error.HTTPError) as busy:
            urllib.request.urlopen(url + export_path(t0), timeout=5)
        assert busy.value.code == 503 and busy.value.headers["Retry-After"] == "10"
        assert not any(reader.finished for reader in readers)  # the scrapes ran while the clips streamed
        assert all(reader.received > 0 for reader in readers)
        print(f"scrapes during two slow downloads: max {max(took) * 1000:.1f} ms, "
              f"median {sorted(took)[len(took) // 2] * 1000:.1f} ms")  # fmt: skip
    finally:
        for reader in readers:
            reader.leave()
    wait_for(lambda: free_slots(server) == MAX_CONCURRENT_EXPORTS, what="the export slots to be free")
    wait_for(lambda: export_ffmpegs() == [], what="every clip's FFmpeg to be gone")


def test_pictures_being_made_do_not_take_the_scrapers_threads(
    served: tuple[ExporterServer, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = served
    url = f"http://127.0.0.1:{server.port}"
    release = threading.Event()
    running = threading.Event()

    def held_ffmpeg(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        running.set()
        release.wait(30)
        return subprocess.CompletedProcess(argv, 1, b"", b"held")

    monkeypatch.setattr(server.operator, "thumbnails", ThumbnailCache("ffmpeg", run=held_ffmpeg))
    statuses: list[int] = []

    def fetch_picture() -> None:
        try:
            with urllib.request.urlopen(url + "/cameras/cam1/latest.jpg", timeout=30) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)

    # More picture requests than the scrapers' pool has threads.
    fetchers = [threading.Thread(target=fetch_picture) for _ in range(6)]
    for fetcher in fetchers:
        fetcher.start()
    try:
        # One FFmpeg runs; the camera's other requests wait for it (in the slow pool, or they would hold
        # every scraper's thread for as long as FFmpeg takes).
        wait_for(running.is_set, what="a picture to be in the making")
        for _ in range(5):
            with urllib.request.urlopen(url + "/metrics", timeout=3) as response:
                assert response.status == 200
    finally:
        release.set()
        for fetcher in fetchers:
            fetcher.join(60)
    assert len(statuses) == 6

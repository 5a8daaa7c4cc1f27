"""The operator's routes on a real daemon: the landing page, camera pictures, recordings as JSON, clip downloads."""

from __future__ import annotations

import base64
import json
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import probe, wait_for
from daemon_harness import Daemon, write_config


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("status")
    config = write_config(
        tmp / "config.yaml",
        tmp / "rec",
        cameras={
            "cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Front door"},
            # Nothing listens there: it never records, and restarts with a reason.
            "broken": {"url": "rtsp://127.0.0.1:9/none", "name": "Broken <b>"},
        },
        supervisor={"backoff_initial": 0.2, "backoff_max": 1},
    )
    d = Daemon(config)
    try:
        wait_for(lambda: _segments(d, "cam1"), timeout=30, what="cam1's first completed segment")
        wait_for(lambda: _restarts(d, "broken"), timeout=30, what="the broken camera's first restart")
        yield d
    finally:
        d.kill()


def _recordings(d: Daemon, camera: str) -> dict:
    status, text, _ = d.get(f"/api/v1/recordings?camera={camera}")
    assert status == 200, text
    return json.loads(text)


def _segments(d: Daemon, camera: str) -> list[dict]:
    return _recordings(d, camera)["segments"]


def _restarts(d: Daemon, camera: str) -> list[dict]:
    return _recordings(d, camera)["restarts"]


def _get_bytes(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_the_landing_page_shows_every_camera_with_picture_state_and_timeline(daemon: Daemon) -> None:
    status, page, headers = daemon.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert page.count('<section class="camera"') == 2
    assert 'src="cameras/cam1/latest.jpg?at=' in page
    assert page.count('<svg class="timeline"') == 2 and 'class="rec"' in page
    # The broken camera shows why it has no picture, escaped.
    broken = page[page.index('id="camera-broken"') :]
    assert "No picture yet: " in broken and "Broken &lt;b&gt;" in broken
    assert re.search(r'class="restart"><title>restart \((connection_refused|exited|crashed|\w+)\)', broken)
    # Offline LAN: no script, nothing fetched from elsewhere.
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert 'href="api/v1/export?camera=cam1&amp;from=' in page


def test_a_chosen_day_and_a_bad_day(daemon: Daemon) -> None:
    today = time.strftime("%Y-%m-%d")
    status, page, _ = daemon.get(f"/?day={today}")
    assert status == 200 and f"Day {today}" in page
    status, text, _ = daemon.get("/?day=yesterday")
    assert status == 400 and "YYYY-MM-DD" in text


def test_latest_jpg_is_a_picture_of_the_newest_completed_segment(daemon: Daemon) -> None:
    status, body, headers = _get_bytes(daemon.url + "/cameras/cam1/latest.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert headers["X-Segment"] in {Path(s["path"]).name for s in _segments(daemon, "cam1")}


def test_latest_jpg_of_unknown_and_not_yet_recording_cameras(daemon: Daemon) -> None:
    assert daemon.get("/cameras/nope/latest.jpg")[0] == 404
    status, text, _ = daemon.get("/cameras/broken/latest.jpg")
    assert status == 404 and "no completed segment yet (state " in text and "last error:" in text


def test_recordings_json_lists_segments_with_start_duration_size_path(daemon: Daemon) -> None:
    data = _recordings(daemon, "cam1")
    assert data["camera"] == "cam1" and data["to"] > data["from"]
    for segment in data["segments"]:
        assert set(segment) >= {"start", "duration", "size", "path"}
        assert Path(segment["path"]).stat().st_size == segment["size"]
        assert 0 < segment["duration"] <= 3
    assert data["stretches"]
    status, text, _ = daemon.get("/api/v1/recordings?camera=nope")
    assert status == 404 and "unknown camera 'nope'" in json.loads(text)["error"]
    status, text, _ = daemon.get("/api/v1/recordings?camera=cam1&from=tomorrow")
    assert status == 400


def test_export_downloads_a_clip_of_the_asked_range(daemon: Daemon, tmp_path: Path) -> None:
    wait_for(lambda: len(_segments(daemon, "cam1")) >= 3, timeout=30, what="three segments")
    segments = _segments(daemon, "cam1")
    start, end = segments[0]["start"], segments[2]["start"] + 1
    status, body, headers = _get_bytes(daemon.url + f"/api/v1/export?camera=cam1&from={start:.0f}&to={end:.0f}")
    assert status == 200, body[:200]
    assert headers["Content-Type"] == "video/mp4" and "attachment; filename=" in headers["Content-Disposition"]
    assert headers["Transfer-Encoding"] == "chunked"  # streamed as FFmpeg cuts it, never held whole
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(body)
    info = probe(clip)
    assert info["ok"] and info["codec"] == "h264" and 2.5 <= info["duration"] <= 6.0, info
    status, body, _ = _get_bytes(daemon.url + "/api/v1/export?camera=cam1&from=-1d&to=-23h")
    assert status == 404 and b"recorded nothing" in body


def test_the_run_summary_and_a_clean_stop(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    d = Daemon(config)
    try:
        wait_for(lambda: _segments(d, "cam1") and _segments(d, "cam2"), timeout=30, what="a segment of each camera")
    finally:
        code = d.stop(signal.SIGTERM)
    log = d.log()
    assert code == 0, log
    assert "This run recorded into" in log
    assert re.search(r"cam1: \d+ segments, \d+ bytes, \d+ frames, 0 restarts, ", log), log
    assert "FFmpeg stopped cleanly" in log and "FFmpeg stopped (exit 255)" not in log


def test_the_operator_routes_are_behind_the_same_auth(tmp_path: Path) -> None:
    from conftest import small_config

    from exporter.server import ExporterServer
    from recorder.daemon.recorder import Recorder
    from recorder.ffmpeg.binary import find_tools

    (tmp_path / "password").write_text("s3cret\n")
    config = small_config(
        tmp_path / "rec",
        exporter={
            "listen_address": "127.0.0.1:0",
            "basic_auth_username": "ops",
            "basic_auth_password_file": str(tmp_path / "password"),
        },
    )
    server = ExporterServer(config.exporter, Recorder(config, find_tools(config.system)))
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/", "/cameras/cam1/latest.jpg", "/api/v1/recordings?camera=cam1", "/api/v1/export?camera=cam1"):
            assert _get_bytes(url + path)[0] == 401, path
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}
        assert _get_bytes(url + "/", auth)[0] == 200
        assert _get_bytes(url + "/api/v1/recordings?camera=cam1", auth)[0] == 200
    finally:
        server.stop()


def test_the_other_routes_answer_as_before(daemon: Daemon) -> None:
    # The operator routes sit beside the others; the old ones answer as before.
    assert daemon.get("/-/healthy")[0] == 200
    assert daemon.get("/api/v1/alertmanager")[0] == 405
    assert daemon.post("/api/v1/export", b"x")[0] == 405
    assert daemon.get("/cameras/cam1/other.jpg")[0] == 404


# ---------------------------------------------------------------------------------------------
# Zoom, labels, units, days (issue 21)


def test_the_timeline_zooms_to_the_last_hour_and_six_hours(daemon: Daemon) -> None:
    for span, title, label_every in (("1h", "Last 1 hour (", 600), ("6h", "Last 6 hours (", 3600)):
        status, page, _ = daemon.get(f"/?span={span}")
        assert status == 200 and title in page, page[:2000]
        assert f'<strong aria-current="page">{span[:-1]} h</strong>' in page
        labels = re.findall(r'<div class="axis">(.*?)</div>', page)[0]
        times = re.findall(r">(\d\d):(\d\d)<", labels)
        assert times and all((int(h) * 3600 + int(m) * 60) % label_every == 0 for h, m in times), labels
    status, page, _ = daemon.get("/")
    assert "Last 24 hours (" in page and '<a href="?span=1h">1 h</a>' in page and '<a href="?span=6h">6 h</a>' in page
    status, text, _ = daemon.get("/?span=7h")
    assert status == 400 and "span: expected one of 1h, 6h, 24h, got '7h'" in text


def test_one_unit_system_and_only_days_with_footage(daemon: Daemon) -> None:
    status, page, _ = daemon.get("/")
    assert status == 200
    assert re.search(r"Recordings in .*: \d+ files, [\d.]+ (B|KiB|MiB|GiB)\b", page)
    assert not re.search(r"\d GB\b", page) and "binary units" in page
    today = time.strftime("%Y-%m-%d")
    week_ago = time.strftime("%Y-%m-%d", time.localtime(time.time() - 6 * 86400))
    assert f'<a href="?day={today}">{today}</a>' in page
    assert f"?day={week_ago}" not in page  # the daemon recorded only today: no link to an empty day


def test_gap_and_restart_labels_are_readable(daemon: Daemon) -> None:
    page = daemon.get("/?span=1h")[1]
    titles = re.findall(r"<title>(gap|recorded|download) ([^<]*)</title>", page)
    assert titles
    for _, text in titles:
        first, _, last = text.partition("–")
        assert first[:8] != last[:8], text  # never "09:19–09:19"
    broken = page[page.index('id="camera-broken"') :]
    # Two blocks, not "state<br>why" glued by the flex box into "recordingno segment completed yet".
    assert re.search(r'<div class="nothumb"><p>No picture yet: \w+</p><p><small>[^<]+</small></p></div>', broken)

"""The status page in a real headless browser (Playwright driving Debian's chromium): 16 cameras with their
pictures and timelines over an index of 200,000 segments, nothing fetched from outside the recorder.

setup.sh installs `chromium`; Playwright's own browser download cannot reach its servers here, so the
system browser is driven. The page's server time is measured by bench/bench_status_page.py; here it is
printed from the browser's Navigation Timing, not asserted.
"""

from __future__ import annotations

import calendar
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Request, Route, sync_playwright

from exporter.server import ExporterServer
from recorder.config import parse_config
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CAMERAS = [f"cam{i:02d}" for i in range(1, 17)]
SEGMENTS = 200_000
SEGMENT_TIME = 60
# One camera has a 15-minute gap ending 20 minutes ago: a 1-px sliver at 24 h, a quarter of the last hour.
GAP_CAMERA, GAP_SECONDS, GAP_ENDS_AGO = "cam16", 900, 1200
SCREENSHOTS = os.environ.get("CAMERA_RECORDER_SCREENSHOTS")  # a folder to keep them in; else the test's tmp
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} is not installed (apt-get install chromium; setup.sh does)"
)


def _stamp(ts: float) -> str:
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime(ts))


def _fill(base: Path, sample: Path, now: float) -> None:
    """12,500 one-byte segment files per camera, 60 s apart; the newest of each is a real video."""
    per_camera = SEGMENTS // len(CAMERAS)
    for offset, cam in enumerate(CAMERAS):
        folder = base / cam
        folder.mkdir()
        fd_dir = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(1, per_camera):
                fd = os.open(f"{cam}_{_stamp(now - (i + 1) * SEGMENT_TIME - offset)}.mkv", os.O_WRONLY | os.O_CREAT,
                             0o644, dir_fd=fd_dir)  # fmt: skip
                os.write(fd, b"x")
                os.close(fd)
        finally:
            os.close(fd_dir)
        shutil.copyfile(sample, folder / f"{cam}_{_stamp(now - SEGMENT_TIME - offset)}.mkv")


def _cut_gap(folder: Path, start: float, end: float) -> int:
    """Remove a camera's segments starting in [start, end): a 15-minute hole in its recordings; how many."""
    removed = 0
    for path in folder.iterdir():
        started = calendar.timegm(time.strptime(path.stem.split("_", 1)[1], "%Y%m%d_%H%M%S"))
        if start <= started < end:
            path.unlink()
            removed += 1
    return removed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterServer]:
    tmp = tmp_path_factory.mktemp("browser")
    sample = tmp / "sample.mkv"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i",
         "testsrc2=size=640x360:rate=10", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
         "-pix_fmt", "yuv420p", str(sample)],
        check=True, timeout=60,
    )  # fmt: skip
    base = tmp / "rec"
    base.mkdir()
    now = time.time()
    _fill(base, sample, now)
    removed = _cut_gap(base / GAP_CAMERA, now - GAP_ENDS_AGO - GAP_SECONDS, now - GAP_ENDS_AGO)
    assert removed == GAP_SECONDS // SEGMENT_TIME
    config = parse_config(
        {
            "cameras": {cam: {"test_pattern": True, "name": f"Camera {cam[3:]}"} for cam in CAMERAS},
            "recording": {"base_directory": str(base), "segment_time": SEGMENT_TIME},
            "exporter": {"listen_address": "127.0.0.1:0"},
        }
    )
    recorder = Recorder(config, find_tools(config.system))
    recorder.storage.scan()  # the index, as the daemon's start builds it
    assert recorder.storage.snapshot().files == SEGMENTS - removed
    srv = ExporterServer(config.exporter, recorder)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_page_renders_cameras_pictures_and_timelines_offline(server: ExporterServer) -> None:
    url = f"http://127.0.0.1:{server.port}/"
    outside: list[str] = []

    def only_the_recorder(route: Route, request: Request) -> None:
        if request.url.startswith(url):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Tall enough that every lazily loaded picture is in view.
            page = browser.new_page(viewport={"width": 1280, "height": 20000})
            page.route("**/*", only_the_recorder)
            response = page.goto(url, wait_until="load", timeout=60_000)
            assert response is not None and response.status == 200
            assert page.locator("section.camera").count() == len(CAMERAS)
            assert page.locator("svg.timeline").count() == len(CAMERAS)
            for cam in CAMERAS:
                section = page.locator(f"#camera-{cam}")
                assert section.locator("svg.timeline rect.rec").count() >= 1, cam
                assert section.locator("a.dl").count() >= 20, cam  # an export link per recorded hour
            page.wait_for_function(
                "() => [...document.images].length === 16 && "
                "[...document.images].every(i => i.complete && i.naturalWidth === 480)",
                timeout=60_000,
            )
            timing = page.evaluate(
                "() => { const t = performance.getEntriesByType('navigation')[0];"
                " return [t.responseEnd - t.requestStart, t.transferSize]; }"
            )
            print(f"page: request to last byte {timing[0]:.1f} ms in the browser, {timing[1]} bytes")
            # A chosen day through the page's own form.
            page.fill("input[name=day]", time.strftime("%Y-%m-%d", time.localtime(time.time() - 86400)))
            page.click("form button[type=submit] >> nth=0")
            page.wait_for_url("**/?day=*")
            assert page.locator("section.camera").count() == len(CAMERAS)
            assert "Day " in page.inner_text("form strong")
        finally:
            browser.close()
    assert outside == []


def test_zoom_readable_gaps_and_screenshots_at_desktop_and_phone_width(server: ExporterServer, tmp_path: Path) -> None:
    """The timeline zooms by links (no script): at 1 h the 15-minute gap is a quarter of the bar, at 24 h about
    1 %. The page fits a phone's width (no sideways scrolling), and a screenshot of each is kept."""
    url = f"http://127.0.0.1:{server.port}/"
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, viewport in VIEWPORTS.items():
                page = browser.new_page(viewport=viewport)
                shares = {}
                for span in ("24h", "6h", "1h"):
                    response = page.goto(url if span == "24h" else f"{url}?span={span}", timeout=60_000)
                    assert response is not None and response.status == 200
                    if span == "24h":
                        page.click("text=1 h")  # the zoom is a link: following it is the zoom
                        page.wait_for_url("**/?span=1h")
                        assert page.locator('.zoom strong[aria-current="page"]').inner_text() == "1 h"
                        page.goto(url, timeout=60_000)
                    section = page.locator(f"#camera-{GAP_CAMERA}")
                    bar = section.locator("svg.timeline").bounding_box()
                    # The cut hole (the other, if any, is the few seconds since the newest segment ended).
                    hole = section.locator("svg.timeline rect.gap", has_text="(15 min)")
                    assert hole.count() == 1, (span, section.locator("svg.timeline rect.gap").count())
                    gap = hole.bounding_box()
                    assert bar is not None and gap is not None
                    shares[span] = gap["width"] / bar["width"]
                    label = hole.locator("title").text_content() or ""
                    start_text, _, rest = label.removeprefix("gap ").partition("–")
                    assert start_text != rest.split(" ")[0], label  # never "09:19–09:19"
                    # Nothing wider than the screen: the page never scrolls sideways, on a phone neither.
                    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, (name, span, overflow)
                    page.screenshot(path=str(folder / f"status-{name}-{span}.png"))
                print(f"{name}: the 15-minute gap is {shares['24h']:.1%} / {shares['6h']:.1%} / {shares['1h']:.1%}"
                      f" of the timeline at 24 h / 6 h / 1 h; screenshots in {folder}")  # fmt: skip
                assert shares["24h"] < 0.02 and 0.03 < shares["6h"] < 0.06 and 0.2 < shares["1h"] < 0.3, shares
                # The day links are the days that hold footage: all of the fixture's last eight days.
                assert page.locator("form a[href^='?day=']").count() == 8
                page.close()
        finally:
            browser.close()
    for name in VIEWPORTS:
        for span in ("24h", "6h", "1h"):
            assert (folder / f"status-{name}-{span}.png").stat().st_size > 10_000

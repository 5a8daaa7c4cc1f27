"""Counters that never lie: every counter a scrape reads only grows while the daemon runs, across reloads
that restart a camera, a rename, a camera removed and added again, hot-plug and retention's pause; a reload's
restart is counted with reason="config"; the run summary and the status page say what is on disk.

A real Recorder with real FFmpeg (test patterns; the device camera is tests/v4l2_standin_ffmpeg.py behind a
node file), scraped through the real collector by a thread that checks every sample against the last."""

from __future__ import annotations

import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config, wait_for
from daemon_harness import Daemon, write_config

from recorder.app.cli import _print_run_summary
from recorder.config import Config
from recorder.daemon.recorder import Recorder
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.binary import find_tools

STAND_IN = Path(__file__).resolve().parents[2] / "v4l2_standin_ffmpeg.py"
PATTERN = {"test_pattern": True, "resolution": "160x120", "framerate": 25}
# Monotonic while the same series is exposed: counters and the histograms' buckets, count and sum, retention's too (a
# reload that re-reads the disk builds a new Storage, which goes on from the old one's counts).
_MONOTONIC = re.compile(r".*(_total|_count|_sum|_bucket)$")


class MonotonicScraper:
    """Scrapes the registry over and over in a thread; records any counter sample lower than before."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.decreases: list[str] = []
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monotonic-scraper", daemon=True)

    def __enter__(self) -> MonotonicScraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def scrape(self) -> None:
        for family in self._registry.collect():
            for sample in family.samples:
                if family.type not in ("counter", "histogram") or not _MONOTONIC.match(sample.name):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                before = self._last.get(key)
                if before is not None and sample.value < before:
                    self.decreases.append(f"{sample.name}{dict(key[1])}: {before} -> {sample.value}")
                self._last[key] = sample.value
        self.scrapes += 1

    def value(self, name: str, **labels: str) -> float | None:
        return self._last.get((name, tuple(sorted(labels.items()))))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.scrape()


def _config(base: Path, node: Path, *, door_rate: int, door_name: str, porch: bool) -> Config:
    cameras: dict[str, dict[str, Any]] = {
        "door": {**PATTERN, "framerate": door_rate, "name": door_name},
        "usb": {"device": str(node), "input_format": "h264", "resolution": "160x120", "framerate": 25},
    }
    if porch:
        cameras["porch"] = dict(PATTERN)
    return small_config(
        base,
        cameras=cameras,
        system={"ffmpeg": str(STAND_IN), "udev": False},
        supervisor={"presence_check_interval": 0.2},
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "video-usb"
    path.touch()
    yield path


def _frames(recorder: Recorder, camera: str) -> int:
    return recorder.supervisors[camera].snapshot.frames


def _recording(recorder: Recorder, camera: str) -> bool:
    return camera in recorder.supervisors and recorder.supervisors[camera].snapshot.state is CameraState.RECORDING


def test_counters_never_go_down_across_20_reloads_a_rename_add_remove_and_hot_plug(
    tmp_path: Path, node: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.server import build_registry

    caplog.set_level("INFO")
    base = tmp_path / "rec"
    # 20 reloads: even ones restart door (its frame rate toggles), odd ones rename it (no restart); porch is
    # added at 5, removed at 11 and added again at 15; usb is unplugged at 7 and plugged back at 9.
    plan = [
        _config(base, node, door_rate=(15 if step % 4 < 2 else 25), door_name=f"Door {(step + 1) // 2}",
                porch=5 <= step < 11 or step >= 15)
        for step in range(21)
    ]  # fmt: skip
    loads = iter(plan[1:])
    recorder = Recorder(plan[0], find_tools(plan[0].system), config_loader=lambda: next(loads))
    registry = build_registry(recorder, Counter())
    restarts_expected = 0
    try:
        recorder.start()
        with MonotonicScraper(registry) as scraper:
            wait_for(lambda: _recording(recorder, "door") and _recording(recorder, "usb"), what="door and usb")
            for step in range(1, 21):
                door_pid = recorder.supervisors["door"].snapshot.ffmpeg_pid
                frames = _frames(recorder, "door")
                restarts_door = step % 2 == 0
                if step == 7:
                    node.unlink()
                    recorder.supervisors["usb"].device_removed()  # what udev's `remove` routes to it
                if step == 9:
                    node.touch()
                    recorder.supervisors["usb"].device_added()
                assert recorder.reload(), f"reload {step} failed"
                restarts_expected += restarts_door
                wait_for(lambda: _recording(recorder, "door"), what=f"door recording after reload {step}")
                pid = recorder.supervisors["door"].snapshot.ffmpeg_pid
                assert (pid != door_pid) is restarts_door, f"reload {step}: door's FFmpeg {door_pid} -> {pid}"
                assert recorder.supervisors["door"].camera.name == f"Door {(step + 1) // 2}"
                # Counters go on from where the previous supervisor left them, never from zero.
                assert _frames(recorder, "door") >= frames
                wait_for(lambda f=frames: _frames(recorder, "door") > f + 10, what=f"door's frames after reload {step}")
                if step in (5, 15):
                    wait_for(lambda: _recording(recorder, "porch"), what=f"porch recording after reload {step}")
                if step == 7:
                    wait_for(lambda: recorder.supervisors["usb"].snapshot.state is CameraState.WAITING_FOR_DEVICE,
                             what="usb unplugged")  # fmt: skip
                if step == 9:
                    wait_for(lambda: _recording(recorder, "usb"), what="usb plugged back")
                scraper.scrape()
                # Retention's pause and resume (stop/start) in the middle of it all.
                if step == 12:
                    recorder.apply_recording_allowed(False)
                    wait_for(lambda: recorder.supervisors["door"].snapshot.state is CameraState.STOPPED,
                             what="door paused")  # fmt: skip
                    recorder.apply_recording_allowed(True)
                    wait_for(lambda: _recording(recorder, "door"), what="door resumed")
            wait_for(lambda: recorder.supervisors["porch"].snapshot.segments_completed >= 1, what="porch's segment")
            scraper.scrape()
        assert scraper.scrapes > 20 and not scraper.decreases, "\n".join(scraper.decreases)
        restarts = "camera_recorder_ffmpeg_restarts_total"
        assert scraper.value(restarts, camera="door", reason="config") == restarts_expected == 10
        assert scraper.value(restarts, camera="usb", reason="config") == 0
        assert scraper.value(restarts, camera="usb", reason="hotplug") == 1
        door = recorder.supervisors["door"].snapshot
        assert [e.reason for e in door.recent_restarts].count("config") == 10
        assert "reload: restarted door: framerate changed" in caplog.text
        assert "reload: door takes the new settings without a restart: name changed" in caplog.text
        assert "recording -> stopped (reload: framerate changed)" in caplog.text
        assert "stopped (removed from the configuration by reload)" in caplog.text
    finally:
        assert recorder.stop()
    # The exit summary: every camera of the run, each with what is on disk.
    lines: list[str] = []
    _print_run_summary(recorder, demo=False, emit=lines.append)
    for camera in ("door", "usb", "porch"):
        on_disk = sum(1 for _ in (base / camera).glob("*.mkv"))
        (line,) = [line for line in lines if line.startswith(f"  {camera}")]
        assert f": {on_disk} segments," in line, (line, on_disk)
    (door_line,) = [line for line in lines if line.startswith("  door:")]
    assert f"{sum(door.restarts.values())} restarts (" in door_line and "config 10" in door_line, door_line


def test_a_camera_removed_by_reload_stays_in_the_summary_and_goes_on_if_added_again(tmp_path: Path, node: Path) -> None:
    base = tmp_path / "rec"
    with_porch = _config(base, node, door_rate=25, door_name="Door", porch=True)
    without = _config(base, node, door_rate=25, door_name="Door", porch=False)
    loads = iter([without])
    recorder = Recorder(with_porch, find_tools(with_porch.system), config_loader=lambda: next(loads))
    try:
        recorder.start()
        wait_for(lambda: (p := recorder.supervisors["porch"].snapshot).segments_completed >= 1 and p.recording,
                 what="a segment of porch")  # fmt: skip
        assert recorder.reload()
        assert "porch" not in recorder.supervisors
        (removed,) = recorder.ledger.removed(recorder.supervisors)
        assert removed.config.id == "porch" and removed.status.state is CameraState.STOPPED
        # Removing is no restart, and no recording gap: the camera is not supposed to record any more.
        assert removed.status.restarts.get("config", 0) == 0 and not removed.status.gap_growing
        segments, frames = removed.status.segments_completed, removed.status.frames
        loads = iter([with_porch])
        assert recorder.reload()
        again = recorder.supervisors["porch"].snapshot
        assert again.segments_completed == segments and again.frames == frames
        wait_for(lambda: recorder.supervisors["porch"].snapshot.frames > frames, what="porch recording again")
        assert recorder.ledger.removed(recorder.supervisors) == ()
    finally:
        assert recorder.stop()


def test_the_status_page_metrics_and_exit_summary_agree_with_the_disk_after_config_restarts(tmp_path: Path) -> None:
    """The issue as reported: four config restarts of door through SIGHUP, a camera added then removed."""
    base = tmp_path / "rec"
    path = write_config(tmp_path / "config.yaml", base, cameras={"door": dict(PATTERN)})
    daemon = Daemon(path)
    try:
        wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="door") == 1, what="door")
        for n, rate in enumerate((15, 25, 15, 25), start=1):
            cameras: dict[str, Any] = {"door": {**PATTERN, "framerate": rate}}
            if n == 2:
                cameras["porch"] = dict(PATTERN)
            loaded_at = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0
            write_config(path, base, cameras=cameras)
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda t=loaded_at: (
                    (daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0) > t
                ),
                what=f"reload {n}",
            )
            wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="door") == 1, what="door back")
            segments = daemon.value("camera_recorder_segments_completed_total", camera="door") or 0
            wait_for(
                lambda s=segments: (daemon.value("camera_recorder_segments_completed_total", camera="door") or 0) > s,
                what=f"a segment after reload {n}",
            )
        assert daemon.value("camera_recorder_ffmpeg_restarts_total", camera="door", reason="config") == 4
        status, page, _ = daemon.get("/")
        assert status == 200
        assert re.search(r"<th>restarts</th><td>4 \(config 4\)</td>", page), page
        assert "<th>last segment</th><td>never</td>" not in page
    finally:
        assert daemon.stop() == 0, daemon.log()
    out = daemon.log()
    for camera in ("door", "porch"):
        on_disk = sum(1 for _ in (base / camera).glob("*.mkv"))
        label = f"  {camera} (removed by a reload):" if camera == "porch" else f"  {camera}:"
        assert re.search(rf"^{re.escape(label)} {on_disk} segments, ", out, re.MULTILINE), (camera, on_disk, out)
    assert re.search(r"^  door: .* 4 restarts \(config 4\)", out, re.MULTILINE), out

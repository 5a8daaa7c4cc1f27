"""Shared test helpers: waiting on conditions with deadlines, configs, ffprobe."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.camera.supervisor import CameraSupervisor
from recorder.config import Config, parse_config
from recorder.ffmpeg.presets import build_command
from recorder.ffmpeg.process import spawn_ffmpeg
from recorder.footage.segments import segment_file_name

# How often wait_for looks again: the pace of a wait with a deadline, never a synchronisation by itself.
POLL_INTERVAL = 0.02


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


def small_config(base: Path, cameras: dict[str, dict[str, Any]] | None = None, **sections: Any) -> Config:
    """A config of cheap test-pattern cameras recording into `base`."""
    raw: dict[str, Any] = {
        "cameras": cameras or {"cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25}},
        "recording": {"base_directory": str(base), "segment_time": 2},
        "supervisor": {"stall_timeout": 3, "backoff_initial": 0.05, "stop_timeout": 5},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_config(raw)


def probe(path: Path) -> dict[str, Any]:
    """ffprobe's view of a file: frame count (decoded), duration, first and last frame times."""
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
            "-show_entries", "stream=nb_read_frames,codec_name:format=duration", "-of", "json", str(path),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    data = json.loads(out.stdout or "{}")
    stream = (data.get("streams") or [{}])[0]
    return {
        "ok": out.returncode == 0 and bool(data.get("streams")),
        "frames": int(stream.get("nb_read_frames", 0) or 0),
        "codec": stream.get("codec_name"),
        "duration": float(data.get("format", {}).get("duration", 0) or 0),
        "stderr": out.stderr,
    }


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str, *, options: str = "") -> Iterator[Path]:
    """A real filesystem of `size` on `where` for the block (the tests run as root), so statvfs, ENOSPC and
    read-only remounts are the kernel's own; unmounted lazily, even while a process still holds a file."""
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}{',' + options if options else ''}", "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {where} (these tests run as root): {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MiB filesystem (root only), so statvfs and a full disk are the kernel's own."""
    with mounted_tmpfs(tmp_path / "tmpfs", "16m") as mount:
        yield mount


def segment_file(base: Path, camera: str, age_seconds: float, size: int) -> Path:
    """A segment-named file of `size` zero bytes that started `age_seconds` ago."""
    path = base / camera / segment_file_name(camera, time.time() - age_seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    return path


def make_supervisor(tmp_path: Path, launcher: object = None, **config: Any) -> CameraSupervisor:
    """A supervisor of small_config's camera recording into `tmp_path`, FFmpeg started by `launcher`."""
    cfg = small_config(tmp_path, **config)
    segments: list[object] = []
    return CameraSupervisor(
        cfg.cameras[0],
        lambda node, suffix: build_command(cfg.cameras[0], cfg, "ffmpeg", name_suffix=suffix),
        cfg.supervisor,
        segment_time=cfg.recording.segment_time,
        ffprobe="ffprobe",
        on_segment=segments.append,
        launcher=launcher or spawn_ffmpeg,  # type: ignore[arg-type]
    )


_E2E_MODULES = {"test_status_page_browser"}  # a real browser, outside tests/e2e/ beside the page it checks


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by where it lives and what it uses, so `-m "not e2e"` (or "not root") selects a loop."""
    for item in items:
        path = Path(str(item.path))
        if "e2e" in path.parts or path.stem in _E2E_MODULES:
            item.add_marker(pytest.mark.e2e)
        fixtures = set(getattr(item, "fixturenames", ()))
        if "tmpfs" in fixtures:
            item.add_marker(pytest.mark.root)
        if fixtures & {"daemon", "raw_daemon"} or _runs_ffmpeg(path):
            item.add_marker(pytest.mark.ffmpeg)


_FFMPEG_MODULES: dict[Path, bool] = {}


def _runs_ffmpeg(path: Path) -> bool:
    """A module that starts FFmpeg (directly, through a supervisor, or through the daemon harness)."""
    if path not in _FFMPEG_MODULES:
        text = path.read_text(encoding="utf-8") if path.suffix == ".py" else ""
        _FFMPEG_MODULES[path] = any(
            word in text for word in ('["ffmpeg"', "spawn_ffmpeg", "daemon_harness", "make_supervisor(")
        )
    return _FFMPEG_MODULES[path]

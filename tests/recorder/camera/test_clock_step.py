"""A wall clock that steps back never makes FFmpeg reuse a segment name: the step is seen, FFmpeg restarts
(reason clock_step) and names new segments with a fresh `-N` suffix. The supervisor test steps the clock
of a real FFmpeg with libfaketime (Debian's faketime, installed by setup.sh)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import small_config, wait_for
from transcoding_support import make_segment

from recorder.camera.storage_gate import StorageGate
from recorder.camera.supervisor import CameraSupervisor
from recorder.config import Container
from recorder.ffmpeg.presets import FFmpegCommand, build_command
from recorder.footage.segments import (
    ClockWatch,
    CompletedSegment,
    folder_names,
    output_pattern,
    parse_segment_name,
    segment_file_name,
)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def test_suffixed_names_parse_to_the_same_time_and_camera() -> None:
    name = segment_file_name("cam-1", 1_700_000_000, "mp4", suffix=3)
    assert name == "cam-1_20231114_221320-3.mp4"
    parsed = parse_segment_name(name)
    assert parsed is not None
    assert (parsed.camera, parsed.start, parsed.extension, parsed.suffix) == ("cam-1", 1_700_000_000, "mp4", 3)
    assert parse_segment_name("cam1_20231114_221320.mkv").suffix == 0  # type: ignore[union-attr]
    # Not ours: no suffix 0, no leading zero, nothing after it.
    for foreign in ("cam1_20231114_221320-0.mkv", "cam1_20231114_221320-01.mkv", "cam1_20231114_221320-1x.mkv"):
        assert parse_segment_name(foreign) is None


def test_the_output_pattern_carries_the_suffix_ffmpeg_is_to_write(tmp_path: Path) -> None:
    camera = small_config(tmp_path).cameras[0]
    assert output_pattern(camera, Container.MKV) == "cam1_%Y%m%d_%H%M%S.mkv"
    assert output_pattern(camera, Container.MP4, 2) == "cam1_%Y%m%d_%H%M%S-2.mp4"


def test_the_watch_sees_a_step_back_once_and_ignores_slews_and_forward_steps() -> None:
    wall, mono = [1000.0], [50.0]
    watch = ClockWatch(lambda: wall[0], lambda: mono[0])
    mono[0] += 10
    wall[0] += 10.4  # NTP slewing: a fraction of a second over ten
    assert watch.stepped_back() == 0.0
    wall[0] += 3600  # forward: names only get later
    assert watch.stepped_back() == 0.0
    wall[0] -= 90
    assert watch.stepped_back() == pytest.approx(90)
    assert watch.stepped_back() == 0.0  # seen once


def test_a_start_behind_the_newest_name_takes_the_next_free_suffix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "cam1"
    folder.mkdir()
    now = 1_700_000_000.0
    for start, suffix in ((now - 60, 0), (now + 30, 0), (now - 10, 1), (now - 5, 4)):
        (folder / segment_file_name("cam1", start, suffix=suffix)).write_bytes(b"x")
    (folder / "cam2_20231114_221320-9.mkv").write_bytes(b"another camera's")
    assert folder_names(folder, "cam1").highest_suffix == 4
    gate = StorageGate(
        on_write_result=lambda error: None, free_space=lambda: False,
        log=logging.LoggerAdapter(logging.getLogger("test"), {"camera": "cam1"}),
    )  # fmt: skip
    waited: list[float] = []
    with caplog.at_level(logging.WARNING):
        assert gate.name_suffix_for_start(folder, "cam1", now, waited.append) == 5
    assert waited == []
    assert "the clock is 31 s behind the newest segment name: new segments are named ...-5" in caplog.text
    # Once the clock is past every name, the usual names are fresh again (after the wait for a new second).
    assert gate.name_suffix_for_start(folder, "cam1", now + 30.5, waited.append) == 0
    assert waited == [pytest.approx(0.5)]


def test_a_supervisor_whose_clock_steps_back_overwrites_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The supervisor and its real FFmpeg see the same stepped clock: FFmpeg through libfaketime, the
    supervisor through its clock. (The whole daemon cannot run under libfaketime: with the monotonic clock
    left alone, its clock_nanosleep turns Python 3.11's time.sleep into EINVAL, libfaketime issue #426.)"""
    assert LIBFAKETIME.exists(), "libfaketime is missing: run ./setup.sh (Debian package faketime)"
    base = tmp_path / "rec"
    # The last 80 seconds of cam1, as if recorded before: 40 two-second segments.
    model = make_segment(tmp_path / "model", "cam1", age_days=0)
    now = time.time()
    planted: dict[Path, str] = {}
    for i in range(40):
        path = base / "cam1" / segment_file_name("cam1", int(now) - 82 + 2 * i)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, path)
        with path.open("ab") as tail:
            tail.write(f"planted {i}".encode())  # each its own bytes: an overwrite cannot look the same
        planted[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    faketime = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",  # read the offset at every call: the test steps it while FFmpeg runs
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # a real step moves the wall clock only
    }
    cfg = small_config(base)

    def command(node: str | None, suffix: int) -> FFmpegCommand:
        built = build_command(cfg.cameras[0], cfg, "ffmpeg", name_suffix=suffix)
        return replace(built, env={**built.env, **faketime})

    def wall() -> float:
        return time.time() + float(offset.read_text())

    completed: list[CompletedSegment] = []
    sup = CameraSupervisor(
        cfg.cameras[0], command, cfg.supervisor, segment_time=cfg.recording.segment_time, ffprobe="ffprobe",
        on_segment=completed.append, clock=wall,
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        sup.start()
        try:
            wait_for(lambda: completed, timeout=30, what="a first segment at the right time")
            offset.write_text("-60\n")  # the clock goes back a minute: its names are the planted ones
            wait_for(lambda: sup.snapshot.restarts.get("clock_step"), timeout=30, what="a clock_step restart")

            def suffixed() -> list[CompletedSegment]:
                found = [seg for seg in completed if parse_segment_name(seg.path.name).suffix]  # type: ignore[union-attr]
                return found if len(found) >= 3 else []

            fresh = wait_for(suffixed, timeout=30, what="segments recorded under fresh names")
        finally:
            assert sup.stop(10)
    changed = [path.name for path, digest in planted.items() if hashlib.sha256(path.read_bytes()).hexdigest() != digest]
    assert changed == []
    assert {parse_segment_name(seg.path.name).suffix for seg in fresh} == {1}  # type: ignore[union-attr]
    # The names say the stepped clock's time: inside the planted minute, not after it.
    assert min(seg.start for seg in fresh) < now
    assert "the clock stepped back" in caplog.text
    assert "new segments are named ...-1 so that none is overwritten" in caplog.text
    assert sup.snapshot.restarts.get("internal_error", 0) == 0


def test_a_suffixed_run_never_takes_the_older_files_after_its_start_for_its_own(tmp_path: Path) -> None:
    from recorder.footage.segments import unfinished_segments

    folder = tmp_path / "cam1"
    folder.mkdir()
    since = 1_700_000_000.0
    before_the_step = [folder / segment_file_name("cam1", since + 60 * i) for i in range(1, 3)]
    mine = folder / segment_file_name("cam1", since + 30, suffix=1)
    for path in (*before_the_step, mine):
        path.write_bytes(b"x")
    # A run started after a step back names its files -1: the plain names after its start are older footage.
    assert unfinished_segments(folder, "cam1", since, set(), suffix=1) == [mine]
    assert unfinished_segments(folder, "cam1", since, set()) == sorted(before_the_step)

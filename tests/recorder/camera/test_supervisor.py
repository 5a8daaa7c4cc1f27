"""One camera's supervisor against a real FFmpeg recording a real test source."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import probe, small_config, wait_for
from transcoding_support import make_segment

from recorder.camera.states import jittered_backoff_bounds
from recorder.camera.supervisor import CameraSupervisor
from recorder.config import CameraConfig, Config, SourceKind
from recorder.domain.vocabulary import CameraState
from recorder.ffmpeg.presets import build_command
from recorder.footage.segments import CompletedSegment, parse_segment_name, segment_file_name

FPS = 25


def _supervisor(config: Config, camera: CameraConfig | None = None, **kwargs: object) -> CameraSupervisor:
    camera = camera or config.cameras[0]
    # A device camera in these tests is recorded from a test pattern standing in for the device.
    stand_in = camera if camera.source is not SourceKind.DEVICE else config.cameras[0]
    segments: list[CompletedSegment] = []
    sup = CameraSupervisor(
        camera,
        lambda node, suffix: build_command(stand_in, config, "ffmpeg", name_suffix=suffix),
        config.supervisor,
        segment_time=config.recording.segment_time,
        ffprobe="ffprobe",
        on_segment=segments.append,
        **kwargs,  # type: ignore[arg-type]
    )
    sup.segments = segments  # type: ignore[attr-defined]
    return sup


@pytest.fixture
def running(tmp_path: Path) -> Iterator[CameraSupervisor]:
    sup = _supervisor(small_config(tmp_path))
    sup.start()
    yield sup
    assert sup.stop(), "supervisor did not stop"


def _recording(sup: CameraSupervisor) -> bool:
    return sup.snapshot.state is CameraState.RECORDING


def _files(folder: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (inode, size, mtime_ns) of every segment: an overwrite changes size or mtime.

    Only segment names: the supervisor's write probe (a hidden file) comes and goes before each start.
    """
    return {
        p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.iterdir()
        if parse_segment_name(p.name)
    }


def test_stopped_to_starting_to_recording_when_frames_arrive(running: CameraSupervisor) -> None:
    wait_for(lambda: _recording(running), what="recording")
    snap = running.snapshot
    assert snap.ffmpeg_pid is not None
    wait_for(lambda: running.snapshot.frames >= FPS, what="a second of frames")
    assert running.snapshot.last_progress_at is not None
    assert running.snapshot.fps > 0


def test_segments_have_the_configured_duration_and_lose_no_frame_at_boundaries(tmp_path: Path) -> None:
    sup = _supervisor(small_config(tmp_path))
    sup.start()
    wait_for(lambda: len(sup.segments) >= 3, timeout=20, what="three segments")  # type: ignore[attr-defined]
    assert sup.stop()
    segments: list[CompletedSegment] = sup.segments  # type: ignore[attr-defined]
    files = sorted((tmp_path / "cam1").iterdir())
    assert [s.path.name for s in segments] == [f.name for f in files], "every file was reported, in order"
    for seg in segments[:-1]:
        assert seg.duration == pytest.approx(2.0, abs=0.05)
        assert seg.size == seg.path.stat().st_size
    probed = [probe(f) for f in files]
    assert all(p["ok"] for p in probed)
    # Every frame FFmpeg counted is in exactly one segment: none lost or doubled at a boundary.
    assert sum(p["frames"] for p in probed) == sup.snapshot.frames
    for p in probed[:-1]:
        assert p["frames"] == 2 * FPS
    snap = sup.snapshot
    assert snap.segments_completed == len(files)
    assert snap.written_bytes == sum(f.stat().st_size for f in files)
    assert snap.segment_durations.count == len(files)


def test_recording_to_backoff_to_recording_when_ffmpeg_is_killed(tmp_path: Path) -> None:
    sup = _supervisor(small_config(tmp_path))
    sup.start()
    try:
        wait_for(lambda: len(sup.segments) >= 1, what="a first segment")  # type: ignore[attr-defined]
        before = _files(tmp_path / "cam1")
        completed = {s.path.name for s in sup.segments}  # type: ignore[attr-defined]
        pid = sup.snapshot.ffmpeg_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sup.snapshot.restarts.get("crashed") == 1, what="the restart to be counted")
        wait_for(lambda: _recording(sup) and sup.snapshot.ffmpeg_pid not in (None, pid), what="a new FFmpeg")
        wait_for(lambda: len(sup.segments) >= len(completed) + 2, what="segments after the restart")  # type: ignore[attr-defined]
    finally:
        assert sup.stop()
    after = _files(tmp_path / "cam1")
    for name in completed:
        assert after[name] == before[name], f"{name} was overwritten"
    assert len({parse_segment_name(n).start for n in after if parse_segment_name(n)}) == len(after)


def test_killed_ffmpeg_leaves_a_playable_segment_missing_at_most_a_gop(tmp_path: Path) -> None:
    config = small_config(tmp_path, recording={"segment_time": 60})
    sup = _supervisor(config)
    sup.start()
    try:
        wait_for(lambda: sup.snapshot.frames >= 4 * FPS, what="four seconds of frames")
        pid = sup.snapshot.ffmpeg_pid
        frames_before_kill = sup.snapshot.frames
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sup.snapshot.restarts.get("crashed") == 1, what="the crash to be handled")
    finally:
        assert sup.stop()
    first = sorted((tmp_path / "cam1").iterdir())[0]
    result = probe(first)
    assert result["ok"], result["stderr"]
    # The test pattern has one keyframe a second (-g = framerate): at most one GOP, plus the frames
    # written between the last progress report and the kill, may be missing.
    assert result["frames"] >= frames_before_kill - FPS
    assert sup.snapshot.discarded == {}


def test_recording_to_stalled_to_recording_when_ffmpeg_is_frozen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sup = _supervisor(small_config(tmp_path, supervisor={"stall_timeout": 1.5}))
    sup.start()
    try:
        wait_for(lambda: _recording(sup), what="recording")
        pid = sup.snapshot.ffmpeg_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: sup.snapshot.restarts.get("stall") == 1, what="the stall restart")
        assert "recording -> stalled" in caplog.text
        wait_for(lambda: _recording(sup) and sup.snapshot.ffmpeg_pid != pid, what="a replacement FFmpeg")
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        assert sup.stop()


def test_restarts_within_one_second_never_reuse_a_file_name(tmp_path: Path) -> None:
    sup = _supervisor(small_config(tmp_path, supervisor={"backoff_initial": 0.01}))
    folder = tmp_path / "cam1"
    finished: dict[str, tuple[int, int, int]] = {}  # files of killed runs, as they were left
    sup.start()
    try:
        pids: list[int] = []
        for restarts in (1, 2, 3):
            # A run just reaped still shows `recording` (with no pid) until the backoff edge: wait for a pid.
            wait_for(lambda: _recording(sup) and sup.snapshot.ffmpeg_pid not in (None, *pids), what="a new FFmpeg")
            pid = sup.snapshot.ffmpeg_pid
            assert pid is not None
            pids.append(pid)
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda n=restarts: sum(sup.snapshot.restarts.values()) == n, what="the restart")
            # Files named up to the kill belong to the killed runs and must stay as they are.
            finished |= {
                name: stat for name, stat in _files(folder).items() if parse_segment_name(name).start <= killed_at
            }
        wait_for(lambda: _recording(sup) and sup.snapshot.frames > 0, what="recording again")
        wait_for(lambda: len(_files(folder)) > len(finished), what="the last run's own file")
    finally:
        assert sup.stop()
    assert sup.snapshot.restarts.get("crashed") == 3
    after = _files(folder)
    for name, stat in finished.items():
        assert after.get(name) == stat, f"{name} was overwritten by a later run"


def test_a_start_waits_out_the_second_of_the_newest_segment_instead_of_overwriting_it(tmp_path: Path) -> None:
    folder = tmp_path / "cam1"
    folder.mkdir()
    now = int(time.time())
    # What a run killed a moment ago left behind, named for this second and the next: real segments (a
    # header-only one would be discarded at the start), each with bytes of its own.
    model = make_segment(tmp_path / "model", "cam1", age_days=1).read_bytes()
    previous = {folder / segment_file_name("cam1", t): model + f"run {t}".encode() for t in (now, now + 1)}
    for path, content in previous.items():
        path.write_bytes(content)
    sup = _supervisor(small_config(tmp_path))
    sup.start()
    try:
        wait_for(lambda: len(list(folder.iterdir())) > len(previous), what="the new run's file")
        wait_for(lambda: _recording(sup), what="recording")
    finally:
        assert sup.stop()
    for path, content in previous.items():
        assert path.read_bytes() == content, f"{path.name} was overwritten"


def test_empty_segment_of_a_run_killed_at_once_is_removed_and_counted(tmp_path: Path) -> None:
    sup = _supervisor(small_config(tmp_path, supervisor={"backoff_initial": 5}))
    folder = tmp_path / "cam1"
    sup.start()
    try:
        pid = wait_for(lambda: sup.snapshot.ffmpeg_pid, what="a pid")
        # Killed as soon as its segment exists: Matroska writes a cluster only after a second of video.
        first = wait_for(lambda: next(iter(folder.glob("cam1_*.mkv")), None), what="the first segment file")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sup.snapshot.restarts.get("crashed") == 1, what="the crash to be handled")
        assert sup.snapshot.discarded == {"empty": 1}
        assert not first.exists()
        assert sup.segments == []  # type: ignore[attr-defined]
    finally:
        assert sup.stop()


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_stable_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = tmp_path / "clip.mkv"
    config = small_config(
        tmp_path,
        cameras={"cam1": {"file": str(clip)}},
        supervisor={"backoff_initial": 0.05, "backoff_max": 0.4, "stable_after": 1.5},
    )
    sup = _supervisor(config)
    caplog.set_level("INFO", logger="recorder.camera.supervisor")

    def waits() -> list[float]:
        return [float(m) for m in re.findall(r"-> backoff \(restart in ([0-9.]+) s\)", caplog.text)]

    sup.start()
    try:
        wait_for(lambda: len(waits()) >= 6, what="six failed starts (the clip does not exist)")
        # Jittered (it was exactly [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]): each wait within its bounded range, as
        # logged to two decimals.
        bounds = [jittered_backoff_bounds(n, 0.05, 0.4) for n in range(1, 7)]
        expected = [(0.05, 0.075), (0.1, 0.15), (0.2, 0.3), (0.2, 0.4), (0.2, 0.4), (0.2, 0.4)]
        assert [pytest.approx(b) for b in bounds] == expected
        assert all(
            low - 0.005 <= wait <= high + 0.005 for wait, (low, high) in zip(waits()[:6], bounds, strict=True)
        ), waits()
        # The source comes back: a run that lasts stable_after resets the backoff.
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "2",
             "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", str(clip)],
            check=True,
        )  # fmt: skip
        wait_for(lambda: _recording(sup), what="recording from the clip")
        started = time.monotonic()
        wait_for(lambda: time.monotonic() - started > 1.6 and _recording(sup), what="a stable run")
        before = len(waits())
        os.kill(sup.snapshot.ffmpeg_pid, signal.SIGKILL)  # type: ignore[arg-type]
        wait_for(lambda: len(waits()) > before, what="the next backoff")
        assert 0.05 <= waits()[before] <= 0.08  # the first range again: [0.05, 0.075], to two decimals
    finally:
        assert sup.stop()


def test_recording_to_waiting_for_device_when_unplugged_and_back_when_plugged(tmp_path: Path) -> None:
    node = tmp_path / "video-usb1"
    node.touch()
    config = small_config(
        tmp_path / "rec",
        cameras={
            "stand_in": {"test_pattern": True, "resolution": "160x120", "framerate": 25},
            "usbcam": {"device": str(node)},
        },
    )
    device_camera = config.camera("usbcam")
    sup = _supervisor(config, device_camera, device_node=lambda: str(node) if node.exists() else None)
    sup.start()
    try:
        wait_for(lambda: _recording(sup), what="recording")
        pid = sup.snapshot.ffmpeg_pid
        node.unlink()
        sup.device_removed()
        wait_for(lambda: sup.snapshot.state is CameraState.WAITING_FOR_DEVICE, what="waiting_for_device")
        assert not sup.snapshot.present
        assert sup.snapshot.restarts.get("hotplug") == 1
        gap = sup.snapshot.gap_seconds
        wait_for(lambda: sup.snapshot.gap_seconds_at(sup.snapshot.taken_at + 1) > gap, what="the gap to grow")
        node.touch()
        sup.device_added()
        wait_for(lambda: _recording(sup) and sup.snapshot.ffmpeg_pid != pid, what="recording again")
        assert sup.snapshot.present
    finally:
        assert sup.stop()


def test_recording_to_stopped_when_asked_finalizes_the_segment(tmp_path: Path) -> None:
    sup = _supervisor(small_config(tmp_path, recording={"segment_time": 60}))
    sup.start()
    wait_for(lambda: sup.snapshot.frames >= 2 * FPS, what="two seconds of frames")
    pid = sup.snapshot.ffmpeg_pid
    assert sup.stop()
    assert sup.snapshot.state is CameraState.STOPPED
    assert sup.snapshot.restarts == {}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]
    # A finalized segment is reported by FFmpeg itself and plays to its end.
    assert len(sup.segments) == 1  # type: ignore[attr-defined]
    result = probe(sup.segments[0].path)  # type: ignore[attr-defined]
    assert result["ok"] and result["frames"] == sup.snapshot.frames

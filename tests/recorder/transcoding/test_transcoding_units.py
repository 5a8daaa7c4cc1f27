"""Unit tests for the transcoder's pieces that need no FFmpeg: its counters, the recordings' lock, the
delayed swaps and the pausable runner's bookkeeping."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from recorder.transcoding.counters import TranscodeCounters
from recorder.transcoding.gate import TranscodeState
from recorder.transcoding.job import PendingSwaps
from recorder.transcoding.ledger import LedgerEntry
from recorder.transcoding.pausable import PausableRunner
from recorder.transcoding.planner import Candidate
from recorder.transcoding.swap import verified_path
from recorder.transcoding.worker import RecordingsLock, TranscoderBusy

CAMERAS = ("cam1", "cam2")


def candidate(camera: str, size: int) -> Candidate:
    name = f"{camera}_20260101_000000.mkv"
    return Candidate(start=0.0, camera=camera, name=name, size=size, path=Path("/nowhere") / camera / name)


def test_counters_start_from_the_ledger_ratio_and_last_success() -> None:
    entries = [
        LedgerEntry("cam1", "a.mkv", "transcoded", 1000, 400, at=50.0),
        LedgerEntry("cam1", "b.mkv", "transcoded", 1000, 600, at=70.0),
        LedgerEntry("cam2", "c.mkv", "failed", 5000, 0, at=90.0),  # not transcoded: not in the ratio
        LedgerEntry("gone", "d.mkv", "transcoded", 2000, 1000, at=99.0),  # a removed camera: ratio only
    ]
    counters = TranscodeCounters(CAMERAS, entries)
    assert counters.size_ratio() == pytest.approx(2000 / 4000)
    snap = counters.snapshot()
    assert dict(snap.last_success) == {"cam1": 70.0}
    assert sum(snap.segments.values()) == 0  # counters since start: the ledger's past is not counted


def test_counters_have_no_ratio_before_the_first_transcode() -> None:
    assert TranscodeCounters(CAMERAS, []).size_ratio() is None


def test_a_finished_job_shortens_the_backlog_and_counts_its_bytes_and_seconds() -> None:
    counters = TranscodeCounters(CAMERAS, [])
    counters.publish_backlog([candidate("cam1", 100), candidate("cam1", 300), candidate("cam2", 50)])
    counters.count_job(candidate("cam1", 100), "transcoded", spent=2.5, output_bytes=40, at=123.0)
    counters.count_job(candidate("cam2", 50), "failed_verification", spent=1.0, output_bytes=0, at=0.0)
    snap = counters.snapshot()
    assert dict(snap.backlog_segments) == {"cam1": 1, "cam2": 0}
    assert dict(snap.backlog_bytes) == {"cam1": 300, "cam2": 0}
    assert snap.segments[("cam1", "transcoded")] == 1 and snap.segments[("cam2", "failed_verification")] == 1
    assert dict(snap.input_bytes) == {"cam1": 100, "cam2": 0}
    assert dict(snap.output_bytes) == {"cam1": 40, "cam2": 0}
    assert dict(snap.seconds) == {"cam1": 2.5, "cam2": 1.0}
    assert dict(snap.last_success) == {"cam1": 123.0}  # a failure is no success
    assert counters.size_ratio() == pytest.approx(0.4)


def test_recovered_ledger_lines_count_in_the_ratio() -> None:
    counters = TranscodeCounters(CAMERAS, [])
    counters.count_recovered([LedgerEntry("cam1", "a.mkv", "transcoded", 1000, 250, at=1.0)])
    assert counters.size_ratio() == pytest.approx(0.25)


def test_a_state_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    counters = TranscodeCounters(CAMERAS, [])
    with caplog.at_level(logging.INFO, logger="recorder.transcoding.worker"):
        counters.set_state(TranscodeState.PAUSED_CPU)
        counters.set_state(TranscodeState.PAUSED_CPU)
        counters.set_state(TranscodeState.RUNNING)
    assert [r.getMessage() for r in caplog.records] == ["transcoding: paused cpu", "transcoding: running"]
    assert counters.snapshot().state is TranscodeState.RUNNING


def test_the_recordings_lock_admits_one_holder_until_released(tmp_path: Path) -> None:
    first, second = RecordingsLock(tmp_path), RecordingsLock(tmp_path)
    first.acquire()
    assert first.held
    with pytest.raises(TranscoderBusy):
        second.acquire()
    assert not second.held
    first.release()
    second.acquire()
    assert second.held
    second.release()
    assert not second.held


def test_a_failed_swap_waits_and_is_completed_by_a_retry(tmp_path: Path) -> None:
    segment = tmp_path / "cam1" / "cam1_20260101_000000.mkv"
    segment.parent.mkdir()
    segment.write_bytes(b"original")
    verified_path(segment).write_bytes(b"replacement")
    (tmp_path / ".originals").write_bytes(b"not a folder")  # step 3 (keep the original) fails
    swaps = PendingSwaps(tmp_path, keep_original=True)
    done: list[str] = []
    assert swaps.swap("cam1", segment, lambda: done.append("swapped"))  # counts as transcoded
    assert segment.read_bytes() == b"original" and done == []
    swaps.retry()
    assert done == []  # still failing
    (tmp_path / ".originals").unlink()
    swaps.retry()
    assert segment.read_bytes() == b"replacement" and done == ["swapped"]
    swaps.retry()
    assert done == ["swapped"]  # done once, then forgotten


def test_a_swap_whose_segment_vanished_is_abandoned(tmp_path: Path) -> None:
    segment = tmp_path / "cam1" / "cam1_20260101_000000.mkv"
    segment.parent.mkdir()
    verified_path(segment).write_bytes(b"replacement")  # retention deleted the segment meanwhile
    done: list[str] = []
    assert not PendingSwaps(tmp_path, keep_original=False).swap("cam1", segment, lambda: done.append("x"))
    assert done == [] and not verified_path(segment).exists() and not segment.exists()


class _Running:
    def decide(self) -> TranscodeState:
        return TranscodeState.RUNNING


def test_the_runner_returns_a_tools_output_and_forgets_its_process() -> None:
    states: list[TranscodeState] = []
    runner = PausableRunner(_Running(), on_state=states.append, poll=0.05)  # type: ignore[arg-type]
    rc, out, err = runner.run_tool(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], 30
    )
    assert (rc, out.strip(), err.strip()) == (0, "out", "err")
    assert runner.process is None and runner.paused_seconds == 0.0

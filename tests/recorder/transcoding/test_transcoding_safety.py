"""The review's findings on night transcoding: verification yields like the encode, the ledger and `.verified`
agree after a crash, a failed swap is finished in-process, a stopping worker keeps its lock until its thread
ends, retention never races the current job, and a file vanishing mid-plan skips only itself."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import probe, wait_for
from transcoding_support import FixedGate, make_segment, transcoder, transcoding_config

from recorder.config import Config
from recorder.transcoding import planner as planner_module
from recorder.transcoding.gate import TranscodeState
from recorder.transcoding.ledger import Ledger, state_folder
from recorder.transcoding.originals import originals_folder
from recorder.transcoding.swap import OriginalVanished, complete_swap, recover, temp_path, verified_path
from recorder.transcoding.worker import ABORTED, Transcoder, TranscoderBusy, TranscodeWorker


def dot_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# 1. Verification runs like the encode


class HeldProbe:
    """Wrappers for ffmpeg and ffprobe that log, per call, the nice value, session and I/O class they run
    with; the ffprobe of the transcoded file (a `.transcoding` argument) waits on a FIFO the test opens."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.log = folder / "calls.log"
        self.fifo = folder / "release"
        os.mkfifo(self.fifo)
        record = (
            f'echo "$0 $(cut -d" " -f19 /proc/$$/stat) $(cut -d" " -f6 /proc/$$/stat) $$ '
            f'$(ionice -p $$ | cut -d: -f1)" >> {self.log}'
        )
        self.ffprobe = folder / "ffprobe"
        self.ffprobe.write_text(
            "#!/bin/sh\n"
            f"{record}\n"
            f'for a in "$@"; do case "$a" in *.transcoding)\n'
            f"  echo $$ > {folder}/held; read x < {self.fifo};;\n"
            "esac; done\n"
            'exec ffprobe "$@"\n'
        )
        self.ffmpeg = folder / "ffmpeg"
        self.ffmpeg.write_text(f'#!/bin/sh\n{record}\nexec ffmpeg "$@"\n')
        for tool in (self.ffprobe, self.ffmpeg):
            tool.chmod(0o755)
        self.held_file = folder / "held"
        self.released = False

    def held_pid(self) -> int | None:
        text = self.held_file.read_text().strip() if self.held_file.exists() else ""
        return int(text) if text else None

    def release(self) -> None:
        """Let the held ffprobe go on (once; nothing when none waits any more)."""
        pid = self.held_pid()
        if self.released or pid is None or not psutil.pid_exists(pid):
            return
        self.released = True
        fd = wait_for(self._open_for_writing, what="the held ffprobe to open its FIFO")
        os.write(fd, b"go\n")
        os.close(fd)

    def _open_for_writing(self) -> int | None:
        try:
            return os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: the reader has not opened it yet
            return None

    def calls(self) -> list[tuple[str, int, int, int, str]]:
        """(tool, nice, session id, pid, I/O class) per call."""
        rows = [line.split() for line in self.log.read_text().splitlines()]
        return [(Path(r[0]).name, int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows]


def held_transcoder(config: Config, tools: HeldProbe, gate: FixedGate) -> Transcoder:
    return Transcoder(config, ffmpeg=str(tools.ffmpeg), ffprobe=str(tools.ffprobe), gate=gate, poll=0.05)


def test_every_verification_tool_runs_idle_in_its_own_group_and_the_gate_pauses_it(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path / "rec", verify_quality=True)
    seg = make_segment(tmp_path / "rec", "cam1", age_days=8)
    tools = HeldProbe(tmp_path / "tools")
    gate = FixedGate(config)
    t = held_transcoder(config, tools, gate)
    result: list[str] = []
    job = threading.Thread(target=lambda: result.append(t.transcode_one(t.plan()[0])))
    job.start()
    try:
        pid = wait_for(tools.held_pid, timeout=120, what="the verification's ffprobe of the transcoded file")
        tool = psutil.Process(pid)
        assert tool.nice() == 19
        assert tool.ionice().ioclass == psutil.IOPRIO_CLASS_IDLE
        assert os.getpgid(pid) == pid  # its own group: SIGSTOP reaches all of it
        gate.state = TranscodeState.PAUSED_CPU
        wait_for(lambda: tool.status() == psutil.STATUS_STOPPED, what="the verification tool stopped by the gate")
        assert t.snapshot().state is TranscodeState.PAUSED_CPU
        gate.state = TranscodeState.RUNNING
        wait_for(lambda: tool.status() != psutil.STATUS_STOPPED, what="the verification tool continued")
        tools.release()
        wait_for(lambda: result, timeout=120, what="the job to finish")
    finally:
        tools.release()
        job.join(120)
    assert result == ["transcoded"]
    assert probe(seg)["codec"] == "hevc"
    calls = tools.calls()
    # The encode, both probes, the decode and the three SSIM samples: every one idle in its own session.
    assert len(calls) == 7, calls
    assert all(nice == 19 and sid == pid and io == "idle" for _, nice, sid, pid, io in calls), calls


def test_stop_during_verification_kills_the_tool_and_keeps_the_original(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path / "rec", verify_quality=False)
    seg = make_segment(tmp_path / "rec", "cam1", age_days=8)
    content = seg.read_bytes()
    tools = HeldProbe(tmp_path / "tools")
    t = held_transcoder(config, tools, FixedGate(config))
    result: list[str] = []
    job = threading.Thread(target=lambda: result.append(t.transcode_one(t.plan()[0])))
    job.start()
    try:
        pid = wait_for(tools.held_pid, timeout=120, what="the verification's ffprobe of the transcoded file")
        t.interrupt()
        wait_for(lambda: result, what="the job to end on stop while its verification tool waits")
    finally:
        tools.release()
        job.join(120)
    assert result == [ABORTED]
    assert not psutil.pid_exists(pid)
    assert seg.read_bytes() == content
    assert dot_files(seg.parent) == []


# ---------------------------------------------------------------------------------------------
# 2. `.verified` and the ledger agree after a crash between them


@pytest.mark.parametrize("keep", [1, 0])
def test_crash_between_verified_and_its_ledger_line_is_recorded_by_recovery(tmp_path: Path, keep: int) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8)
    original_size = seg.stat().st_size
    verified_path(seg).write_bytes(b"r" * 1000)  # step 2's rename done, its ledger line not yet written
    t = transcoder(transcoding_config(tmp_path, keep_original_days=keep))
    t.recover()
    assert seg.read_bytes() == b"r" * 1000
    entry = Ledger(tmp_path).final("cam1", seg.name)  # durable: a fresh reader sees it
    assert entry is not None and entry.result == "transcoded"
    assert (entry.input_bytes, entry.output_bytes) == (original_size, 1000)
    assert t.size_ratio() == pytest.approx(1000 / original_size)
    assert t.plan() == []  # never transcoded a second time


def test_recovery_writes_no_second_ledger_line_when_the_crash_came_after_it(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path)
    seg = make_segment(tmp_path, "cam1", age_days=8)
    t = transcoder(config)
    assert t.transcode_one(t.plan()[0]) == "transcoded"
    lines = (state_folder(tmp_path) / "ledger.ndjson").read_text().splitlines()
    verified_path(seg).write_bytes(b"again")
    transcoder(config).recover()
    assert (state_folder(tmp_path) / "ledger.ndjson").read_text().splitlines() == lines
    assert [json.loads(line)["result"] for line in lines] == ["transcoded"]


# ---------------------------------------------------------------------------------------------
# 3. A failed swap is finished in-process


def test_failed_swap_keeps_both_and_is_completed_by_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = transcoding_config(tmp_path, keep_original_days=1)
    seg = make_segment(tmp_path, "cam1", age_days=8)
    blocker = originals_folder(tmp_path, "cam1").parent
    blocker.write_bytes(b"not a folder")  # `.originals` cannot be created: the swap's step 3 fails
    replaced: list[tuple[str, Path]] = []
    t = transcoder(config, on_replaced=lambda camera, path, *_: replaced.append((camera, path)))
    with caplog.at_level(logging.ERROR, logger="recorder.transcoding.worker"):
        assert t.transcode_one(t.plan()[0]) == "transcoded"
        assert probe(seg)["codec"] == "h264"  # the original holds the name
        assert verified_path(seg).exists()  # and the verified replacement waits
        t.retry_pending_swaps()  # still failing: not logged again
    assert len([r for r in caplog.records if "swap failed" in r.getMessage()]) == 1
    assert replaced == []  # retention still accounts the original's size: it is what holds the name
    blocker.unlink()
    t.retry_pending_swaps()
    assert replaced == [("cam1", seg)]
    assert probe(seg)["codec"] == "hevc"
    assert probe(originals_folder(tmp_path, "cam1") / seg.name)["codec"] == "h264"
    assert dot_files(seg.parent) == []


def test_the_worker_thread_retries_a_pending_swap_before_its_next_job(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path, keep_original_days=1)
    seg = make_segment(tmp_path, "cam1", age_days=8)
    blocker = originals_folder(tmp_path, "cam1").parent
    blocker.write_bytes(b"not a folder")
    t = transcoder(config)
    assert t.transcode_one(t.plan()[0]) == "transcoded"
    blocker.unlink()
    worker = TranscodeWorker(t, paused_tick=0.05)
    worker.start()
    try:
        wait_for(lambda: not verified_path(seg).exists(), what="the worker to complete the pending swap")
    finally:
        worker.stop()
    assert probe(seg)["codec"] == "hevc"


# ---------------------------------------------------------------------------------------------
# 4. A stopping worker keeps its lock until its thread has ended; temporary names are unique


class HeldGate(FixedGate):
    """A gate whose decide() blocks until the test lets it go: a worker thread busy mid-job."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, TranscodeState.PAUSED_CPU)
        self.entered = threading.Event()
        self.go = threading.Event()

    def decide(self) -> TranscodeState:
        self.entered.set()
        self.go.wait(60)
        return super().decide()


def test_lock_is_released_only_when_the_old_thread_has_ended(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path)
    gate = HeldGate(config)
    old = TranscodeWorker(transcoder(config, gate=gate), paused_tick=0.05)
    old.start()
    new = TranscodeWorker(transcoder(config, gate=FixedGate(config, TranscodeState.PAUSED_CPU)), paused_tick=0.05)
    try:
        assert gate.entered.wait(30)
        old.stop(timeout=0)  # the join times out: the thread is still inside its job
        assert old.alive
        with pytest.raises(TranscoderBusy):
            transcoder(config).acquire()  # the old thread still holds the recordings' lock
        new.start()  # waits for the lock instead of working beside the old thread
        assert new.alive and not new.transcoder.holds_lock()
    finally:
        gate.go.set()
    wait_for(lambda: not old.alive, what="the old worker thread to end")
    wait_for(new.transcoder.holds_lock, what="the new worker to take the lock once the old thread ended")
    new.stop()
    assert not new.alive and not new.transcoder.holds_lock()
    transcoder(config).acquire()  # released with the thread


def test_a_worker_waiting_for_the_lock_stops_without_taking_it(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path)
    holder = transcoder(config)
    holder.acquire()  # a `--transcode` pass, say
    waiting = TranscodeWorker(transcoder(config), paused_tick=0.05)
    waiting.start()
    waiting.stop()
    assert not waiting.alive and not waiting.transcoder.holds_lock()
    holder.release()


def test_temporary_names_are_unique_and_recovered(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8)
    first, second = temp_path(seg), temp_path(seg)
    assert first != second
    for temp in (first, second):
        assert temp.name.startswith(f".{seg.name}.") and temp.name.endswith(".transcoding")
        temp.write_bytes(b"half")
    assert sorted(recover(tmp_path, ["cam1"], keep_original=True).removed_temporaries) == sorted([first, second])
    assert dot_files(seg.parent) == []


# ---------------------------------------------------------------------------------------------
# 5. Retention and the current job


def test_busy_paths_name_the_segment_and_its_temporary_file_during_a_job(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path, preset="medium", verify_quality=False)
    seg = make_segment(tmp_path, "cam1", age_days=8, seconds=4, size="320x240")
    gate = FixedGate(config, TranscodeState.PAUSED_CPU)
    t = transcoder(config, gate=gate, poll=0.05)
    worker = TranscodeWorker(t)
    assert worker.busy_paths() == []
    result: list[str] = []
    job = threading.Thread(target=lambda: result.append(t.transcode_one(t.plan()[0])))
    job.start()
    try:
        busy = wait_for(worker.busy_paths, what="the job to name its files")
        assert seg in busy and verified_path(seg) in busy
        temps = [p for p in busy if p.name.startswith(f".{seg.name}.") and p.name.endswith(".transcoding")]
        assert len(temps) == 1
        wait_for(lambda: t.process is not None, what="FFmpeg writing that temporary file")
        assert worker.busy_paths() == busy
    finally:
        gate.state = TranscodeState.RUNNING
        job.join(120)
    assert result == ["transcoded"]
    assert worker.busy_paths() == []


@pytest.mark.parametrize("keep", [True, False])
def test_swap_never_resurrects_a_segment_retention_deleted(tmp_path: Path, keep: bool) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8)
    verified_path(seg).write_bytes(b"replacement")
    seg.unlink()  # retention, between verification and swap
    with pytest.raises(OriginalVanished):
        complete_swap(tmp_path, seg, keep_original=keep)
    assert not seg.exists()
    assert dot_files(seg.parent) == []


def test_recovery_discards_a_replacement_whose_segment_retention_deleted(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8)
    verified_path(seg).write_bytes(b"replacement")
    seg.unlink()
    t = transcoder(transcoding_config(tmp_path, keep_original_days=0))
    t.recover()
    assert not seg.exists()
    assert dot_files(seg.parent) == []
    assert Ledger(tmp_path).entries() == []


def test_worker_discards_its_replacement_when_retention_deletes_the_segment_mid_job(tmp_path: Path) -> None:
    config = transcoding_config(tmp_path, preset="medium", verify_quality=False)
    seg = make_segment(tmp_path, "cam1", age_days=8, seconds=4, size="320x240")
    deleted = threading.Event()

    def retention_on_swap(base: Path, segment: Path, *, keep_original: bool) -> None:
        segment.unlink()  # retention runs between the ledger line and the swap
        deleted.set()
        complete_swap(base, segment, keep_original=keep_original)

    t = transcoder(config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("recorder.transcoding.job.complete_swap", retention_on_swap)
        assert t.transcode_one(t.plan()[0]) == ABORTED
    assert deleted.is_set()
    assert not seg.exists()
    assert dot_files(seg.parent) == []


# ---------------------------------------------------------------------------------------------
# 6. A file vanishing mid-plan skips only itself


def test_a_file_vanishing_between_listing_and_stat_skips_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep = [make_segment(tmp_path, "cam1", age_days=age) for age in (9, 8)]
    victim = make_segment(tmp_path, "cam1", age_days=10)
    real_scandir = os.scandir

    @contextlib.contextmanager
    def listing_then_retention(path: Path) -> Iterator[Iterator[os.DirEntry[str]]]:
        with real_scandir(path) as it:
            entries = list(it)
        victim.unlink()  # deleted after the listing, before its stat
        yield iter(entries)

    monkeypatch.setattr(planner_module.os, "scandir", listing_then_retention)
    due = planner_module.plan(tmp_path, ["cam1"], Ledger(tmp_path), now=time.time(), min_age_days=7)
    monkeypatch.undo()
    assert [c.path for c in due] == keep


def test_a_failed_recovery_keeps_the_thread_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead worker thread would read as a wedged daemon: it stays, waits, and recovers later."""
    from recorder.transcoding import worker as worker_module

    monkeypatch.setattr(worker_module, "RECOVERY_RETRY_SECONDS", 0.05)
    t = transcoder(
        transcoding_config(tmp_path), gate=FixedGate(transcoding_config(tmp_path), TranscodeState.PAUSED_CPU)
    )
    real_recover, attempts = t.recover, []

    def failing_twice() -> None:
        attempts.append(1)
        if len(attempts) <= 2:
            raise OSError(5, "Input/output error")
        real_recover()

    monkeypatch.setattr(t, "recover", failing_twice)
    worker = TranscodeWorker(t, paused_tick=0.05)
    with caplog.at_level(logging.INFO, logger="recorder.transcoding.worker"):
        worker.start()
        try:
            wait_for(lambda: t.snapshot().state is TranscodeState.PAUSED_CPU, what="the worker past its recovery")
            assert worker.alive and len(attempts) == 3
        finally:
            worker.stop()
    logged = [r.getMessage() for r in caplog.records]
    assert sum("recovery at start failed" in m for m in logged) == 1, "logged once, not at each attempt"
    assert any("recovery succeeded after 2 failed attempts" in m for m in logged)

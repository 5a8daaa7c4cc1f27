"""One FFmpeg run on its own: a fake FFmpeg whose pipes the test writes, hooks that record what they hear.

Each test drives `FFmpegRun.wait()` in a thread of its own and writes the bytes that cause what it checks:
progress blocks, stderr lines, segment-list entries, or nothing at all (a stall).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config, wait_for
from fake_ffmpeg import FakeFFmpeg

from recorder.domain.vocabulary import RestartReason
from recorder.ffmpeg.presets import FFmpegCommand, build_command
from recorder.ffmpeg.run import PAUSE, STDERR_LINES_KEPT, STOP, FFmpegRun, RunHooks, RunOutcome, process_usage
from recorder.footage.segments import segment_file_name


class Heard:
    """Everything the run told its owner, in order, and what the owner answers when asked to end it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.end: str | None = None

    def hooks(self) -> RunHooks:
        return RunHooks(
            end_requested=lambda: self.end,
            progressed=lambda advanced, first: self.events.append(("progressed", advanced, first)),
            stalled=lambda last_advance, now: self.events.append(("stalled",)),
            segment_done=lambda path, duration: self.events.append(("segment", path.name, duration)),
            segment_discarded=lambda path, reason: self.events.append(("discarded", path.name, reason)),
            reaped=lambda: self.events.append(("reaped",)),
        )

    def named(self, kind: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == kind]


class Running:
    """A run waited for in a background thread; `outcome()` joins it."""

    def __init__(self, run: FFmpegRun) -> None:
        self.run = run
        self._outcome: RunOutcome | None = None
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        self._outcome = self.run.wait()

    def outcome(self, timeout: float = 20.0) -> RunOutcome:
        self._thread.join(timeout)
        assert self._outcome is not None, "the run did not end"
        return self._outcome


@contextmanager
def running(
    tmp_path: Path, fake: FakeFFmpeg, heard: Heard, **supervisor: Any
) -> Iterator[tuple[Running, FFmpegCommand, int]]:
    """A run of `fake` with `heard`'s hooks; yields it, its command and the write end of its wake-up pipe."""
    cfg = small_config(tmp_path, supervisor={"stall_timeout": 30, **supervisor})
    command = build_command(cfg.cameras[0], cfg, "ffmpeg")
    command.output_dir.mkdir(parents=True, exist_ok=True)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    run = FFmpegRun(
        fake,
        command,
        cfg.supervisor,
        camera_id=cfg.cameras[0].id,
        ffprobe="ffprobe",
        wake_fd=wake_read,
        hooks=heard.hooks(),
        log=logging.LoggerAdapter(logging.getLogger("test_ffmpeg_run"), {"camera": cfg.cameras[0].id}),
        monotonic=time.monotonic,
        clock=time.time,
    )
    try:
        yield Running(run), command, wake_write
    finally:
        fake.close()
        if fake.popen is not None and fake.popen.poll() is None:
            fake.popen.kill()
        os.close(wake_read)
        os.close(wake_write)


def test_progress_tells_first_frame_then_frames_and_a_crash_is_classified(tmp_path: Path) -> None:
    fake, heard = FakeFFmpeg(), Heard()
    with running(tmp_path, fake, heard) as (run, _, _):
        fake.progress(0)  # alive, no frame yet
        fake.progress(5)
        fake.progress(9)
        wait_for(lambda: len(heard.named("progressed")) == 3, what="three progress blocks")
        fake.dies("Segmentation fault")
        outcome = run.outcome()
    assert heard.named("progressed") == [("progressed", False, False), ("progressed", True, True),
                                         ("progressed", True, False)]  # fmt: skip
    assert heard.events[-1] == ("reaped",)
    assert outcome.exit_signal == signal.SIGKILL and outcome.returncode == -signal.SIGKILL
    assert outcome.reason == RestartReason.CRASHED
    assert outcome.last_error == "Segmentation fault"
    assert not outcome.stable  # stable_after has not passed
    assert run.run.last_progress is not None and run.run.last_progress.frame == 9


def test_stderr_keeps_the_last_lines_and_names_the_last_error(tmp_path: Path) -> None:
    fake, heard = FakeFFmpeg(), Heard()
    with running(tmp_path, fake, heard) as (run, _, _):
        for n in range(STDERR_LINES_KEPT + 10):
            fake.stderr(f"line {n}")
        fake.dies("the last words")
        outcome = run.outcome()
    assert run.run.stderr[0] == "line 11"  # the ring buffer dropped the oldest
    assert len(run.run.stderr) == STDERR_LINES_KEPT
    assert outcome.last_error == "the last words"


def test_a_listed_segment_is_handed_over_and_an_empty_one_removed(tmp_path: Path) -> None:
    fake, heard = FakeFFmpeg(), Heard()
    with running(tmp_path, fake, heard) as (run, command, _):
        kept = command.output_dir / segment_file_name(command.camera_id, 1_700_000_000)
        kept.write_bytes(b"\0" * 64 * 1024)  # big enough and with a duration: not decoded
        empty = command.output_dir / segment_file_name(command.camera_id, 1_700_000_060)
        empty.write_bytes(b"")  # what FFmpeg leaves when it dies into a full disk
        fake.segment_listed(kept.name, 0.0, 60.0)
        fake.segment_listed(empty.name, 60.0, 60.0)
        wait_for(lambda: heard.named("discarded"), what="the empty segment removed")
        assert run.run.completed_names == {kept.name, empty.name}
        fake.dies("gone")
        run.outcome()
    assert heard.named("segment") == [("segment", kept.name, 60.0)]
    assert heard.named("discarded")[0][1] == empty.name
    assert kept.exists() and not empty.exists()


@pytest.mark.parametrize("requested", [STOP, PAUSE])
def test_a_requested_end_terminates_the_group_and_is_no_restart(tmp_path: Path, requested: str) -> None:
    fake, heard = FakeFFmpeg(), Heard()
    with running(tmp_path, fake, heard) as (run, _, wake_write):
        fake.progress(3)
        wait_for(lambda: heard.named("progressed"), what="a frame")
        fake.close()  # only the child holds the pipes now: they close when SIGTERM ends it
        heard.end = requested
        os.write(wake_write, b"x")
        outcome = run.outcome()
    assert run.run.kill_reason == requested
    assert outcome.exit_signal == signal.SIGTERM
    assert outcome.reason is None and outcome.last_error is None
    assert not heard.named("stalled")


def test_an_unplugged_source_ends_the_run_with_hotplug(tmp_path: Path) -> None:
    fake, heard = FakeFFmpeg(), Heard()
    with running(tmp_path, fake, heard) as (run, _, wake_write):
        fake.close()
        heard.end = RestartReason.HOTPLUG
        os.write(wake_write, b"x")
        outcome = run.outcome()
    assert outcome.reason == RestartReason.HOTPLUG
    assert outcome.exit_signal == signal.SIGTERM


def test_a_stall_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    fake, heard = FakeFFmpeg(ignore_sigterm=True), Heard()
    with running(tmp_path, fake, heard, stall_timeout=0.5) as (run, _, _):
        fake.close()  # no progress ever comes; the frozen child holds its pipes until SIGKILL
        outcome = run.outcome()
    assert heard.named("stalled") == [("stalled",)]
    assert outcome.reason == RestartReason.STALL
    assert outcome.exit_signal == signal.SIGKILL  # SIGTERM was ignored: the escalation got it


def test_a_launcher_that_cannot_start_raises_from_the_constructor(tmp_path: Path) -> None:
    def no_fork(command: FFmpegCommand) -> object:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    cfg = small_config(tmp_path)
    with pytest.raises(OSError):
        FFmpegRun(
            no_fork,  # type: ignore[arg-type]
            build_command(cfg.cameras[0], cfg, "ffmpeg"),
            cfg.supervisor,
            camera_id=cfg.cameras[0].id,
            ffprobe="ffprobe",
            wake_fd=-1,
            hooks=RunHooks(),
            log=logging.LoggerAdapter(logging.getLogger("test_ffmpeg_run"), {}),
            monotonic=lambda: 0.0,
            clock=lambda: 0.0,
        )


def test_process_usage_reads_cpu_and_memory_from_one_stat_line(tmp_path: Path) -> None:
    """A command name with spaces and parentheses does not shift the fields; a gone process reads as None."""
    stat = tmp_path / "4242" / "stat"
    stat.parent.mkdir()
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    fields = ["S"] + ["0"] * 10 + [str(3 * ticks), str(ticks)] + ["0"] * 8 + ["250"] + ["0"] * 20
    stat.write_text(f"4242 (ffmpeg (cam 1)) {' '.join(fields)}\n")
    assert process_usage(4242, proc=str(tmp_path)) == (4.0, 250 * page)
    assert process_usage(4243, proc=str(tmp_path)) is None
    own = process_usage(os.getpid())
    assert own is not None and own[1] > 0

"""SIGKILL of a real process running the transcoder, at many instants of a job, then a restart: the segment
is the original or a verified replacement, never neither, never a half file counted as a segment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import probe, wait_for
from transcoding_support import make_segment, transcoder, transcoding_config

from recorder.storage.facade import Storage
from recorder.transcoding.originals import originals_folder

REPO = Path(__file__).resolve().parents[3]

# The worker as the daemon runs it, in its own process: recovery, then every due segment.
WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from transcoding_support import transcoder, transcoding_config
    config = transcoding_config(Path({base!r}), preset="medium", keep_original_days={keep})
    t = transcoder(config)
    t.acquire()
    t.recover()
    for cand in t.plan():
        print("result", t.transcode_one(cand), flush=True)
    print("done", flush=True)
    """
)


def start_worker(base: Path, keep: int) -> subprocess.Popen[str]:
    code = WORKER.format(tests=str(REPO / "tests"), base=str(base), keep=keep)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)


def assert_clean(base: Path, seg: Path, frames: int, keep: bool) -> str:
    """After recovery: no temporary file, the name holds a whole segment, the accounting sees one file."""
    leftovers = [p.name for p in seg.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers
    facts = probe(seg)
    assert facts["ok"], facts["stderr"]
    assert facts["frames"] == frames
    storage = Storage(transcoding_config(base))
    storage.scan()
    assert storage.snapshot().cameras["cam1"].files == 1
    if facts["codec"] == "hevc" and keep:
        assert probe(originals_folder(base, "cam1") / seg.name)["codec"] == "h264"
    return str(facts["codec"])


def no_ffmpeg_left(pid: int) -> bool:
    """No transcoding FFmpeg of the killed worker still runs (it dies with its parent)."""
    for proc in psutil.process_iter(["name", "ppid", "cmdline"]):
        try:
            if proc.info["name"] == "ffmpeg" and proc.info["ppid"] in (pid, 1) and "libx265" in proc.info["cmdline"]:
                return False
        except (psutil.NoSuchProcess, TypeError):
            continue
    return True


@pytest.mark.parametrize("keep", [1, 0])
def test_sigkill_at_many_instants_then_restart_leaves_the_original_or_a_verified_replacement(
    tmp_path: Path, keep: int
) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8, seconds=3, size="320x240")
    frames = probe(seg)["frames"]
    outcomes: list[str] = []
    delay = 0.05
    for _ in range(40):
        worker = start_worker(tmp_path, keep)
        time.sleep(delay)  # the instant of the kill is the variable under test, not a synchronisation
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert worker.stdout is not None
        finished = "done" in worker.stdout.read()
        wait_for(lambda w=worker: no_ffmpeg_left(w.pid), timeout=10, what="the orphaned FFmpeg to die")
        # Restart: recovery alone (as the daemon does first), then the state must be clean.
        t = transcoder(transcoding_config(tmp_path, keep_original_days=keep))
        t.recover()
        outcomes.append(assert_clean(tmp_path, seg, frames, bool(keep)))
        if finished or outcomes[-1] == "hevc":
            break
        delay *= 1.35
    assert outcomes[-1] == "hevc", outcomes  # the kills got later until one run completed
    assert "h264" in outcomes  # and at least one kill caught the job before its swap


def test_sigkill_mid_ffmpeg_leaves_a_temporary_file_that_restart_removes(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, "cam1", age_days=8, seconds=4, size="320x240")
    content = seg.read_bytes()
    worker = start_worker(tmp_path, 1)
    temps: list[Path] = []

    def output_written() -> bool:
        temps[:] = list(seg.parent.glob(f".{seg.name}.*.transcoding"))  # a unique name per job
        return len(temps) == 1 and temps[0].stat().st_size > 0

    wait_for(output_written, timeout=60, what="FFmpeg to write its output")
    temp = temps[0]
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    wait_for(lambda: no_ffmpeg_left(worker.pid), timeout=10, what="the orphaned FFmpeg to die")
    assert temp.exists()  # the crash left it
    t = transcoder(transcoding_config(tmp_path))
    t.recover()
    assert not temp.exists()
    assert seg.read_bytes() == content
    assert [c.path for c in t.plan()] == [seg]  # not marked: tried again

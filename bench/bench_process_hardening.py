"""Figures for issue 11's process, signal and config-reader parts, on the real CLI and the real daemon.

    .venv/bin/python bench/bench_process_hardening.py [--rounds 5]

Prints:
- `--validate` of the 9-level alias bomb against a minimal config: wall time and peak RSS (target: both
  within noise of the minimal config; it used to take 37 s and 3 GB);
- time from start to the first camera recording with an FFmpeg whose `-version` hangs (target: not
  the 5 s probe timeout, nor the 10 s it used to be);
- SIGHUP with one camera changed, to that camera recording again (its FFmpeg finalizes the segment,
  the next starts in a later second), and whether the unchanged camera kept its FFmpeg (it must).
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
sys.path.insert(0, str(TESTS))

from conftest import wait_for  # noqa: E402
from daemon_harness import Daemon, write_config  # noqa: E402


def _validate(config: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of `camera-recorder --validate -c config` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "recorder", "--validate", "-c", str(config)],
        cwd=REPO, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    # ru_maxrss of children is the largest child so far: meaningful when the measured one is the largest.
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return elapsed, peak / 1024


def bench_alias_bomb(rounds: int) -> None:
    for name in ("minimal.yaml", "alias-bomb.yaml"):
        runs = [_validate(TESTS / "configs" / name) for _ in range(rounds)]
        times = [t for t, _ in runs]
        print(
            f"--validate {name:16s}: median {statistics.median(times) * 1000:6.0f} ms "
            f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}), peak RSS {max(r for _, r in runs):.0f} MiB"
        )


def _hanging_ffmpeg(folder: Path) -> Path:
    script = folder / "ffmpeg"
    script.write_text('#!/bin/sh\ncase " $* " in *" -version "*) exec sleep 1000 ;; esac\nexec ffmpeg "$@"\n')
    script.chmod(0o755)
    return script


def bench_start_with_a_hanging_ffmpeg(rounds: int) -> None:
    figures = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config = write_config(
                folder / "config.yaml", folder / "rec", system={"ffmpeg": str(_hanging_ffmpeg(folder))}
            )
            started = time.perf_counter()
            daemon = Daemon(config)
            try:
                wait_for(lambda d=daemon: d.value("camera_recorder_camera_recording", camera="cam1") == 1, timeout=30)
                figures.append(time.perf_counter() - started)
            finally:
                daemon.stop()
    print(
        f"start to first camera recording, FFmpeg -version hanging: median {statistics.median(figures):.2f} s "
        f"(min {min(figures):.2f}, max {max(figures):.2f})"
    )


def bench_reload(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_config(folder / "config.yaml", folder / "rec", recording={"segment_time": 600})
        daemon = Daemon(path)
        durations, kept = [], 0
        try:
            wait_for(lambda: len(daemon.ffmpeg_pid_by_camera()) == 2, timeout=30)
            for round_ in range(rounds):
                before = daemon.ffmpeg_pid_by_camera()
                cams = {
                    "cam1": {"test_pattern": True, "resolution": "160x120", "framerate": 25, "name": "Left"},
                    "cam2": {"test_pattern": True, "resolution": "160x120", "framerate": 10 + round_, "name": "Right"},
                }
                write_config(path, folder / "rec", recording={"segment_time": 600}, cameras=cams)
                last = daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0
                started = time.perf_counter()
                os.kill(daemon.proc.pid, signal.SIGHUP)
                wait_for(
                    lambda last=last: (
                        (daemon.value("camera_recorder_config_last_reload_success_timestamp_seconds") or 0) > last
                    ),
                    timeout=30,
                )
                wait_for(
                    lambda before=before: daemon.ffmpeg_pid_by_camera().get("cam2") not in (None, before["cam2"]),
                    timeout=30,
                )
                wait_for(lambda: daemon.value("camera_recorder_camera_recording", camera="cam2") == 1, timeout=30)
                durations.append(time.perf_counter() - started)
                kept += daemon.ffmpeg_pid_by_camera()["cam1"] == before["cam1"]
        finally:
            daemon.stop()
    print(
        f"SIGHUP with cam2 changed, to cam2 recording again: median {statistics.median(durations):.2f} s "
        f"(min {min(durations):.2f}, max {max(durations):.2f}); cam1 kept its FFmpeg in {kept}/{rounds} reloads"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; figures are noisy on a shared machine")
    bench_alias_bomb(args.rounds)
    bench_start_with_a_hanging_ffmpeg(max(1, args.rounds // 2))
    bench_reload(args.rounds)


if __name__ == "__main__":
    main()

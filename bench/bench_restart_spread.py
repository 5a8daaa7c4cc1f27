"""Eight cameras on one USB hub that fails: how spread out their restarts are, round after round.

Eight real CameraSupervisors start real processes through the real spawn_ffmpeg. While the simulated hub is
up, each camera's "FFmpeg" is a silent process that stays; then the hub fails: every one is SIGKILLed at the
same instant and, for --rounds restarts, every new start dies at once (as FFmpeg does on a device that is
not there yet). Each start's instant is taken in the launcher; the spread of a round is the time between the
first and the last camera's k-th restart. With the jittered backoff the spread grows round after round;
--no-jitter runs the earlier plain exponential wait (tenacity's wait_exponential) for comparison, whose
spread stays at thread-scheduling noise.

    .venv/bin/python bench/bench_restart_spread.py [--cameras 8] [--rounds 6] [--no-jitter]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from bench_support import wait  # noqa: E402
from conftest import small_config  # noqa: E402
from tenacity import wait_exponential  # noqa: E402

from recorder.camera import states  # noqa: E402
from recorder.camera.supervisor import CameraSupervisor  # noqa: E402
from recorder.ffmpeg.presets import FFmpegCommand, build_command  # noqa: E402
from recorder.ffmpeg.process import FFmpegProcess, spawn_ffmpeg  # noqa: E402

SILENT = ("/bin/sh", "-c", "exec sleep 600")  # the hub is up: a camera's process that stays
DIES = ("/bin/sh", "-c", "exit 1")  # the hub is down: a start that fails at once


class Hub:
    """The cameras' shared fate: up (starts stay) or down (starts die), and every start's instant."""

    def __init__(self) -> None:
        self.up = True
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.running: dict[str, FFmpegProcess] = {}
        self._lock = threading.Lock()

    def launch(self, command: FFmpegCommand) -> FFmpegProcess:
        with self._lock:
            up = self.up
            self.starts[command.camera_id].append(time.monotonic())
        process = spawn_ffmpeg(dataclasses.replace(command, argv=SILENT if up else DIES))
        if up:
            self.running[command.camera_id] = process
        return process

    def fail(self) -> float:
        """Every camera's process dies at the same instant; later starts die too."""
        with self._lock:
            self.up = False
            for camera in self.starts:
                self.starts[camera].clear()
        at = time.monotonic()
        for process in self.running.values():
            os.killpg(process.pgid, signal.SIGKILL)
        return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--backoff-initial", type=float, default=0.2)
    parser.add_argument("--backoff-max", type=float, default=2.0)
    parser.add_argument("--no-jitter", action="store_true", help="the earlier plain exponential backoff")
    args = parser.parse_args()
    logging.getLogger("recorder").setLevel(logging.ERROR)  # each camera's backoff lines would bury the figures
    if args.no_jitter:
        # What CameraStateMachine built before the jitter: wait_exponential alone, capped by backoff_max.
        states.jittered_backoff = lambda initial, cap, share=0.0: wait_exponential(  # type: ignore[assignment]
            multiplier=initial, max=cap, exp_base=2
        )
    hub = Hub()
    with tempfile.TemporaryDirectory(prefix="bench-restart-spread-") as folder:
        cameras = {f"hub{n}": {"test_pattern": True, "resolution": "160x120", "framerate": 25}
                   for n in range(args.cameras)}  # fmt: skip
        supervisor = {"backoff_initial": args.backoff_initial, "backoff_max": args.backoff_max,
                      "stall_timeout": 600, "stable_after": 600}  # fmt: skip
        config = small_config(Path(folder), cameras=cameras, supervisor=supervisor)
        sups = [
            CameraSupervisor(
                camera,
                lambda node, suffix, camera=camera: build_command(camera, config, "ffmpeg", name_suffix=suffix),
                config.supervisor,
                segment_time=config.recording.segment_time,
                ffprobe="ffprobe",
                launcher=hub.launch,
            )
            for camera in config.cameras
        ]
        for sup in sups:
            sup.start()
        try:
            wait(lambda: len(hub.running) == args.cameras, 30, "every camera started with the hub up")
            failed_at = hub.fail()
            wait(
                lambda: all(len(hub.starts[c.id]) >= args.rounds for c in config.cameras),
                timeout=args.rounds * args.backoff_max * 3 + 30,
                what=f"{args.rounds} restarts of every camera",
            )
        finally:
            for sup in sups:
                sup.stop(10)
    mode = "plain exponential (no jitter)" if args.no_jitter else "jittered (equal jitter, capped by backoff_max)"
    print(f"{args.cameras} cameras, backoff_initial {args.backoff_initial:g} s, backoff_max {args.backoff_max:g} s, "
          f"{mode}")  # fmt: skip
    print("round  first restart after the failure  spread (last - first)  stdev of instants")
    for k in range(args.rounds):
        instants = [hub.starts[c.id][k] for c in config.cameras]
        spread = max(instants) - min(instants)
        print(
            f"{k + 1:5d}  {min(instants) - failed_at:27.3f} s  {spread:19.3f} s  {statistics.pstdev(instants):15.3f} s"
        )


if __name__ == "__main__":
    main()

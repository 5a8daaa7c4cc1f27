"""The supervisor thread's CPU per FFmpeg progress block, away from the noise of a whole daemon.

A supervisor runs on a fake FFmpeg (tests/fake_ffmpeg.py) whose stdout this script writes: real-sized
progress blocks (12 lines, bitrate N/A as with the segment muxer), each waited for in the snapshot before the
next. Prints the supervisor thread's CPU per block (from /proc/self/task/TID/schedstat): the steady cost of a
recording camera, about one block a second, that bench_recorder.py measures over a whole daemon.

    .venv/bin/python bench/bench_progress_block.py [--blocks 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import make_supervisor, wait_for  # noqa: E402
from fake_ffmpeg import FakeFFmpeg  # noqa: E402

from recorder.camera.supervisor import CameraSupervisor  # noqa: E402
from recorder.domain.vocabulary import CameraState  # noqa: E402

BLOCK = (
    "frame={frame}\nfps=60.00\nstream_0_0_q=-1.0\nbitrate=N/A\ntotal_size=N/A\nout_time_us={us}\n"
    "out_time_ms={us}\nout_time=00:00:01.000000\ndup_frames=0\ndrop_frames=0\nspeed=1.00x\nprogress=continue\n"
)


def thread_cpu_ns(sup: CameraSupervisor) -> int:
    thread = sup._thread  # the benchmark reaches in for the supervision thread's id
    assert thread is not None and thread.native_id is not None
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1000)
    args = parser.parse_args(argv)
    fake = FakeFFmpeg()
    with tempfile.TemporaryDirectory(prefix="bench-progress-block-") as folder:
        sup = make_supervisor(Path(folder), fake, supervisor={"stall_timeout": 300, "backoff_initial": 30})
        sup.start()
        try:
            wait_for(lambda: sup.snapshot.state is CameraState.STARTING, what="starting")

            def block(frame: int) -> None:
                os.write(fake.stdout_w, BLOCK.format(frame=frame, us=frame * 16666).encode())
                while sup.snapshot.frames != frame:  # published: the block was handled
                    time.sleep(0.001)

            for frame in range(1, 50):  # warm up: recording, the first samples
                block(frame)
            before = thread_cpu_ns(sup)
            for frame in range(50, 50 + args.blocks):
                block(frame)
            per_block_us = (thread_cpu_ns(sup) - before) / args.blocks / 1000
        finally:
            fake.close()
            sup.stop(timeout=10)
    print(f"blocks={args.blocks}")
    print(f"supervisor_cpu_per_progress_block_microseconds={per_block_us:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

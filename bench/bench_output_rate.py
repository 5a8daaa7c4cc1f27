"""What measuring the output rate costs: OutputRateMeter.sample() against a real FFmpeg writing segments.

The supervisor offers a sample at each progress block (about once a second per camera) and the meter looks at
most every OUTPUT_RATE_SAMPLE_EVERY seconds; this prints the cost of one look (the descriptor remembered, and
with /proc/PID/fd listed each time as before the cache) and the measured rate next to the bytes that
actually landed in the files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recorder.ffmpeg.progress import OUTPUT_RATE_SAMPLE_EVERY, OUTPUT_RATE_WINDOW_SECONDS, OutputRateMeter


def _microseconds_per_call(call: Callable[[], object], times: int) -> float:
    began = time.perf_counter()
    for _ in range(times):
        call()
    return (time.perf_counter() - began) / times * 1e6


def _sample_listing_fds(meter: OutputRateMeter) -> float:
    """A sample as the meter took each before it remembered the segment's descriptor: /proc/PID/fd listed."""
    meter._segment_fd = None  # the benchmark reaches in to time the old path
    return meter.sample()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=14.0, help="how long FFmpeg records")
    parser.add_argument("--samples", type=int, default=2000, help="samples timed back to back")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-output-rate-") as folder:
        out = Path(folder)
        ffmpeg = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
             "-t", str(args.seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
             "-f", "segment", "-segment_time", "1", "-reset_timestamps", "1", str(out / "seg_%03d.mkv")],
        )  # fmt: skip
        deadline = time.monotonic() + 10.0
        while not any(out.iterdir()) and time.monotonic() < deadline:  # FFmpeg opens its first file
            time.sleep(0.05)
        looking = OutputRateMeter(ffmpeg.pid, out, sample_every=0)  # every call looks
        per_sample_us = _microseconds_per_call(looking.sample, args.samples)
        listing = OutputRateMeter(ffmpeg.pid, out, sample_every=0)
        per_listing_us = _microseconds_per_call(
            lambda: (listing.__setattr__("_segment_fd", None), listing.sample()), args.samples
        )
        meter = OutputRateMeter(ffmpeg.pid, out)
        rates = []  # once the window is full: before that it still spans the quiet start
        sampling_from = time.monotonic()
        while ffmpeg.poll() is None:
            rate = meter.sample()
            if time.monotonic() - sampling_from > OUTPUT_RATE_WINDOW_SECONDS:
                rates.append(rate)
            time.sleep(1.0)
        written = sum(p.stat().st_size for p in out.iterdir())
    every = f"{OUTPUT_RATE_SAMPLE_EVERY:g}"
    print(f"sample_microseconds={per_sample_us:.1f} (descriptor remembered; a look at most every {every} s)")
    print(f"sample_listing_fds_microseconds={per_listing_us:.1f} (as every sample did before the cache)")
    print(f"measured_rate_bytes_per_second_median={sorted(rates)[len(rates) // 2] if rates else 0:.0f}")
    print(f"measured_rate_samples={len(rates)}")
    print(f"written_bytes_per_second_average={written / args.seconds:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

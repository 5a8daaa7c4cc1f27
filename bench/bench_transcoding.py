"""Night transcoding (issue 15) on this machine, with real FFmpeg and a real daemon (run as root).

Prints, `key=value`:

- `libx265_speed_x_realtime`: seconds of a 1440p60 H.264 segment (testsrc2, 16 Mbit/s like a camera's
  stream copy) encoded per wall second by the transcode argv (libx265, `--preset`, quality 26), niced as
  the worker runs it; and `verify_seconds` for the verification of that result (ffprobe, full decode, SSIM).
- `savings_percent`: how much smaller the verified result is. testsrc2 is synthetic: real camera footage
  (noise, motion) compresses differently; read it as an order of magnitude.
- `recording_dropped_frames`, `recording_gap_seconds`: while a real daemon records a 1440p60 camera (the
  same clip replayed in real time, stream copy) and its worker transcodes old segments on the same box
  with the CPU limit off (the worst case): both must be 0.
- `sigkill_to_clean_seconds`: from SIGKILL of a process running the worker mid-transcode to a clean
  state (leftover removed, the original in place) at its restart, and `ffmpeg_gone_seconds` until its
  FFmpeg was gone too.

Figures from a 2-core machine shared with other work are noisy: run it twice.

    sudo .venv/bin/python bench/bench_transcoding.py [--seconds 2] [--preset fast] [--record-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_support import free_port, wait  # noqa: E402

from recorder.config import Container, parse_config  # noqa: E402
from recorder.ffmpeg.presets import build_transcode_command  # noqa: E402
from recorder.footage.segments import segment_file_name  # noqa: E402
from recorder.transcoding.gate import CpuReading, DiskReading, Gate  # noqa: E402
from recorder.transcoding.pausable import idle_priority_prefix  # noqa: E402
from recorder.transcoding.verify import probe, verify  # noqa: E402
from recorder.transcoding.worker import Transcoder  # noqa: E402

DAY = 86400.0


def make_clip(path: Path, seconds: float) -> None:
    """1440p60 H.264 at a camera's bitrate, one keyframe a second, as a stream-copying camera writes it."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=size=2560x1440:rate=60",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "16M", "-maxrate", "16M",
            "-bufsize", "16M", "-g", "60", "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip


def config_for(base: Path, preset: str, **transcoding: Any) -> Any:
    return parse_config(
        {
            "cameras": {"cam1": {"test_pattern": True}},
            "recording": {"base_directory": str(base)},
            "transcoding": {"enabled": True, "codec": "libx265", "preset": preset, "quality": 26, **transcoding},
        }
    )


def quiet_transcoder(config: Any) -> Transcoder:
    gate = Gate(
        config.transcoding,
        cpu=lambda: CpuReading(0.0, 0.0),
        disk=lambda: DiskReading(0.1, 10**13, 0.8),
        ignore_window=True,
    )
    return Transcoder(config, ffmpeg="ffmpeg", ffprobe="ffprobe", gate=gate)


def bench_speed_and_savings(work: Path, clip: Path, preset: str) -> None:
    base = work / "speed"
    seg = base / "cam1" / segment_file_name("cam1", time.time() - 10 * DAY)
    seg.parent.mkdir(parents=True)
    shutil.copy(clip, seg)
    config = config_for(base, preset)
    out = seg.with_name(f".{seg.name}.transcoding")
    argv, env = build_transcode_command(config, seg, out, Container.MKV, "ffmpeg")
    started = time.monotonic()
    subprocess.run([*idle_priority_prefix(), *argv], env={**os.environ, **env}, check=True)
    encode = time.monotonic() - started
    facts = probe(seg)
    assert facts is not None
    started = time.monotonic()
    verdict = verify(seg, out, container="mkv", check_quality=True)
    verify_seconds = time.monotonic() - started
    savings = 100 * (1 - out.stat().st_size / seg.stat().st_size)
    print(f"clip=2560x1440@60 {facts.duration:.1f}s {seg.stat().st_size / 1e6:.1f}MB preset={preset}")
    print(f"libx265_speed_x_realtime={facts.duration / encode:.3f}")
    print(f"verify_seconds={verify_seconds:.1f} verified={verdict.ok} ssim={verdict.ssim}")
    print(f"savings_percent={savings:.1f}")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def bench_recording_while_transcoding(work: Path, clip: Path, preset: str, record_seconds: float) -> None:
    base = work / "daemon"
    for age in (12, 11, 10, 9):
        seg = base / "cam1" / segment_file_name("cam1", time.time() - age * DAY)
        seg.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, seg)
    now = datetime.now()
    port = free_port()
    config = work / "daemon.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                # The clip replayed in real time with stream copy: a 1440p60 H.264 camera.
                "cameras": {"cam1": {"file": str(clip)}},
                "recording": {"base_directory": str(base), "segment_time": 10},
                "transcoding": {
                    "enabled": True, "codec": "libx265", "preset": preset, "quality": 26, "min_age_days": 7,
                    "run_schedule_start": (now - timedelta(hours=1)).strftime("%H:%M"),
                    "run_schedule_end": (now + timedelta(hours=2)).strftime("%H:%M"),
                    "max_cpu_percent": 100, "max_io_wait": 100, "min_free_space_gb": 0,
                },
            }
        )
    )  # fmt: skip
    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{port}"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        cam = (("camera", "cam1"),)
        wait(lambda: scrape_or_none(port), 30, "the daemon to serve")
        wait(lambda: scrape(port).get(("camera_recorder_camera_recording", cam)) == 1, 60, "recording")
        before = scrape(port)
        time.sleep(record_seconds)  # the measurement period itself, not a synchronisation
        after = scrape(port)
        transcoded = after.get(("camera_recorder_transcode_segments_total", (*cam, ("result", "transcoded"))), 0)
        busy = after.get(("camera_recorder_transcode_seconds_total", cam), 0)
        dropped = (
            after[("camera_recorder_dropped_frames_total", cam)] - before[("camera_recorder_dropped_frames_total", cam)]
        )
        gap = (
            after[("camera_recorder_recording_gap_seconds_total", cam)]
            - before[("camera_recorder_recording_gap_seconds_total", cam)]
        )
        frames = after[("camera_recorder_frames_total", cam)] - before[("camera_recorder_frames_total", cam)]
        print(
            f"recording_seconds={record_seconds:g} frames_written={frames:.0f} (expected ~{60 * record_seconds:.0f}) "
            f"segments_transcoded_meanwhile={transcoded:.0f} transcode_busy_seconds={busy:.1f}"
        )
        print(f"recording_dropped_frames={dropped:.0f} target=0 {'met' if dropped == 0 else 'MISSED'}")
        print(f"recording_gap_seconds={gap:.2f} target=0 {'met' if gap == 0 else 'MISSED'}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()


def scrape_or_none(port: int) -> dict[Any, float] | None:
    try:
        return scrape(port)
    except OSError:
        return None


WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {bench!r})
    from pathlib import Path
    from bench_transcoding import config_for, quiet_transcoder
    t = quiet_transcoder(config_for(Path({base!r}), {preset!r}))
    t.acquire()
    for cand in t.plan():
        t.transcode_one(cand)
    """
)


def bench_sigkill(work: Path, clip: Path, preset: str) -> None:
    base = work / "kill"
    seg = base / "cam1" / segment_file_name("cam1", time.time() - 10 * DAY)
    seg.parent.mkdir(parents=True)
    shutil.copy(clip, seg)
    size = seg.stat().st_size
    code = WORKER.format(repo=str(REPO), bench=str(REPO / "bench"), base=str(base), preset=preset)
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    temps = lambda: list(seg.parent.glob(f".{seg.name}.*.transcoding"))  # noqa: E731 - a unique name per job
    wait(lambda: any(p.stat().st_size > 0 for p in temps()), 120, "the transcode to write output")
    ffmpeg = [p for p in psutil.Process(worker.pid).children(recursive=True) if p.name() == "ffmpeg"]
    killed = time.monotonic()
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    t = quiet_transcoder(config_for(base, preset))  # the restart
    t.acquire()
    t.recover()
    clean = time.monotonic() - killed
    gone = wait(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ffmpeg), 30, "FFmpeg")
    ffmpeg_gone = time.monotonic() - killed if gone else float("nan")
    ok = not temps() and seg.stat().st_size == size
    print(f"sigkill_to_clean_seconds={clean:.3f} clean={ok} ffmpeg_gone_seconds={ffmpeg_gone:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of the 1440p60 clip")
    parser.add_argument("--preset", default="fast", help="libx265 preset")
    parser.add_argument("--record-seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-transcoding-") as tmp:
        work = Path(tmp)
        clip = work / "clip-1440p60.mkv"
        make_clip(clip, args.seconds)
        bench_speed_and_savings(work, clip, args.preset)
        bench_sigkill(work, clip, args.preset)
        bench_recording_while_transcoding(work, clip, args.preset, args.record_seconds)


if __name__ == "__main__":
    main()

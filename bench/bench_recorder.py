"""Two 2560x1440@60 H.264 cameras (a pre-encoded clip looped in real time, stream copy) for 60 s.

Prints: supervisor CPU seconds, FFmpeg CPU seconds, their ratio, supervisor peak RSS, and the median
time from killing an FFmpeg to its replacement's first frame (10 kills). Targets: supervisor CPU
<= 5 % of FFmpeg CPU, RSS <= 60 MB, recovery median <= 1.0 s.

    .venv/bin/python bench/bench_recorder.py [--seconds 60] [--kills 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml
from bench_support import free_port, wait
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]


def make_clip(path: Path) -> None:
    """Four seconds of 2560x1440@60 H.264 at ~10 Mbit/s with a one-second GOP, like the cameras."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=2560x1440:rate=60",
         "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-b:v", "10M", "-maxrate", "10M",
         "-bufsize", "20M", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def ffmpeg_children(proc: psutil.Process) -> dict[str, psutil.Process]:
    """Each camera's recording FFmpeg, by the folder of its output (its last argument): the ffprobe that checks
    a cut segment also names the camera folder, and taking it for the replacement would time nothing."""
    out = {}
    for child in proc.children():
        try:
            args = child.cmdline() if child.name() == "ffmpeg" else []
        except psutil.Error:
            continue
        camera = Path(args[-1]).parent.name if args else None
        if camera in ("cam1", "cam2"):
            out[camera] = child
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp_name:
        tmp = Path(tmp_name)
        clip = tmp / "clip.mkv"
        make_clip(clip)
        config = {
            "cameras": {
                cam: {"file": str(clip), "resolution": "2560x1440", "framerate": 60} for cam in ("cam1", "cam2")
            },
            "recording": {"base_directory": str(tmp / "rec"), "segment_time": 1800},
            "storage": {"check_interval": 60},
            # Each kill below is an isolated crash: a run of 2 s counts as stable and resets the backoff
            # (30 s by default), otherwise ten kills in a row are a crash loop and back off to 30 s.
            "supervisor": {"stable_after": 2},
            # The cameras are files: no udev monitor, so the udev events of whatever else runs on the machine
            # (other test runs plugging virtual cameras) are not charged to the daemon's figure.
            "system": {"udev": False},
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        daemon = subprocess.Popen(
            [sys.executable, "-m", "recorder", "-c", str(tmp / "config.yaml"), "--listen-address", f"127.0.0.1:{port}",
             "--log-level", "WARNING"],
            cwd=REPO, stderr=(tmp / "daemon.log").open("wb"),
        )  # fmt: skip
        proc = psutil.Process(daemon.pid)
        try:
            wait(lambda: len(ffmpeg_children(proc)) == 2, 20, "two FFmpeg")

            def recording() -> bool:
                try:
                    s = scrape(url)
                except OSError:
                    return False
                return all(s.get(("camera_recorder_camera_recording", (("camera", c),))) == 1 for c in ("cam1", "cam2"))

            wait(recording, 20, "both cameras recording")
            # Steady state: no scraping while measuring, so the figure is the supervisor's own cost.
            children = ffmpeg_children(proc)
            sup0, ff0 = cpu_seconds(proc), sum(cpu_seconds(c) for c in children.values())
            started = time.monotonic()
            time.sleep(args.seconds)  # the measured interval itself, not a synchronisation
            elapsed = time.monotonic() - started
            sup1, ff1 = cpu_seconds(proc), sum(cpu_seconds(c) for c in children.values())
            status = Path(f"/proc/{daemon.pid}/status").read_text().splitlines()
            peak_rss = int(next(ln for ln in status if ln.startswith("VmHWM")).split()[1])  # kB
            sup_cpu, ff_cpu = sup1 - sup0, ff1 - ff0

            recoveries = []
            for _ in range(args.kills):
                child = ffmpeg_children(proc)["cam1"]
                frames = scrape(url)[("camera_recorder_frames_total", (("camera", "cam1"),))]
                killed = time.monotonic()
                os.kill(child.pid, signal.SIGKILL)

                def new_frames(before: float = frames, old: int = child.pid) -> bool:
                    cams = ffmpeg_children(proc)
                    if "cam1" not in cams or cams["cam1"].pid == old:
                        return False
                    s = scrape(url)
                    return (
                        s.get(("camera_recorder_camera_recording", (("camera", "cam1"),))) == 1
                        and s[("camera_recorder_frames_total", (("camera", "cam1"),))] > before
                    )

                wait(new_frames, 20, "the replacement's first frame", poll=0.005)  # the figure's resolution
                recoveries.append(time.monotonic() - killed)
                time.sleep(2.5)  # a stable run between kills (stable_after: 2), so each is an isolated crash
        except TimeoutError as exc:
            print(f"{exc}; daemon log:\n{(tmp / 'daemon.log').read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
    ratio = sup_cpu / ff_cpu if ff_cpu else float("inf")
    median = statistics.median(recoveries)
    print(f"measured_seconds={elapsed:.1f}")
    print(f"supervisor_cpu_seconds={sup_cpu:.3f}")
    print(f"ffmpeg_cpu_seconds={ff_cpu:.3f}")
    print(f"supervisor_to_ffmpeg_cpu_ratio={ratio:.4f} target<=0.05 {'met' if ratio <= 0.05 else 'MISSED'}")
    print(f"supervisor_peak_rss_mb={peak_rss / 1024:.1f} target<=60 {'met' if peak_rss / 1024 <= 60 else 'MISSED'}")
    print(f"recovery_seconds={','.join(f'{r:.3f}' for r in recoveries)}")
    print(f"recovery_median_seconds={median:.3f} target<=1.0 {'met' if median <= 1.0 else 'MISSED'}")
    print(f"daemon_exit_code={code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

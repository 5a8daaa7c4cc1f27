"""A header-only file left by an FFmpeg killed before this start (SIGKILL just after a cut) is removed and
counted as discarded when the camera's supervisor starts: never counted in recordings_files, never listed."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from conftest import wait_for
from daemon_harness import Daemon, write_config
from transcoding_support import make_segment

from recorder.footage.segments import SUSPICIOUS_SEGMENT_BYTES, leftover_segments, segment_file_name

HEADER_ONLY_BYTES = 570  # what the issue found after a SIGKILL just after a cut


def plant(base: Path, age_seconds: float, *, cut_to: int | None = None) -> Path:
    model = make_segment(base.parent / f"model-{age_seconds:g}", "cam1", age_days=0)
    path = base / "cam1" / segment_file_name("cam1", int(time.time() - age_seconds))
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, path)
    if cut_to is not None:
        with path.open("r+b") as cut:
            cut.truncate(cut_to)
    return path


def test_only_small_files_without_a_frame_are_leftovers(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    header_only = plant(base, 600, cut_to=HEADER_ONLY_BYTES)
    whole = plant(base, 300)
    empty = base / "cam1" / segment_file_name("cam1", int(time.time() - 900))
    empty.write_bytes(b"")
    (base / "cam1" / "notes.txt").write_text("x")  # not a segment: never looked at
    assert whole.stat().st_size >= SUSPICIOUS_SEGMENT_BYTES  # a whole segment is not even probed
    found = dict(leftover_segments("ffprobe", base / "cam1", "cam1"))
    assert set(found) == {header_only, empty}
    assert found[empty] == "empty"


def test_the_daemon_discards_and_counts_a_header_only_leftover_before_it_records(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    header_only = plant(base, 600, cut_to=HEADER_ONLY_BYTES)
    whole = plant(base, 300)
    config = write_config(
        tmp_path / "config.yaml", base, cameras={"cam1": {"test_pattern": True, "resolution": "160x120"}}
    )
    daemon = Daemon(config)
    try:

        def discarded() -> float:
            return sum(
                daemon.value("camera_recorder_segments_discarded_total", camera="cam1", reason=reason) or 0
                for reason in ("empty", "unreadable")
            )

        wait_for(lambda: discarded() == 1, timeout=20, what="the leftover counted as discarded")
        samples = daemon.samples()  # one scrape: a segment may complete between two
        recorded = samples[("camera_recorder_recordings_files", (("camera", "cam1"),))]
        completed = samples[("camera_recorder_segments_completed_total", (("camera", "cam1"),))]
        assert recorded == 1 + completed  # the whole old segment and what this run recorded, not the leftover
        assert not header_only.exists() and whole.exists()
        status, body, _ = daemon.get(f"/api/v1/recordings?camera=cam1&from={time.time() - 3600:.0f}")
        assert status == 200
        listed = {segment["path"] for segment in json.loads(body)["segments"]}
        assert str(header_only) not in listed and str(whole) in listed
    finally:
        assert daemon.stop() == 0

"""The operator's JSON and clip routes as plain calls on a recorder that does not run: which cameras they
know, and what a reload between two reads of the recorder does to a request."""

from __future__ import annotations

import json
import subprocess
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config

from exporter.exchange import Request, Response, StreamedResponse, headers_of
from exporter.routes.operator import OperatorRoutes
from recorder.daemon.recorder import Recorder
from recorder.ffmpeg.binary import find_tools
from recorder.footage.segments import segment_file_name

SEGMENT_SECONDS = 2


def real_segment(path: Path) -> None:
    """Real video: an export probes every piece it is to send."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=5",
         "-t", str(SEGMENT_SECONDS), "-c:v", "libx264", "-preset", "ultrafast", str(path)],
        check=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    """cam1 enabled, `porch` disabled; both with two segments on disk, indexed by one scan."""
    base = tmp_path / "rec"
    t0 = float(int(time.time()) - 3600)
    for camera in ("cam1", "porch"):
        for start in (t0, t0 + SEGMENT_SECONDS):
            path = base / camera / segment_file_name(camera, start)
            real_segment(path)
    config = small_config(
        base,
        cameras={"cam1": {"test_pattern": True}, "porch": {"test_pattern": True, "enabled": False}},
        recording={"segment_time": SEGMENT_SECONDS},
    )
    rec = Recorder(config, find_tools(config.system))
    rec.storage.scan()
    rec.t0 = t0  # type: ignore[attr-defined]
    return rec


def call(handler: Any, path: str, method: str = "GET") -> Response | StreamedResponse:
    request = Request(method, path, "HTTP/1.1", headers_of(), ("127.0.0.1", 0))
    handler(request)
    assert request.response is not None
    return request.response


def recordings_path(recorder: Recorder, camera: str) -> str:
    t0 = recorder.t0  # type: ignore[attr-defined]
    return f"/api/v1/recordings?camera={camera}&from={t0 - 10:.0f}&to={t0 + 10:.0f}"


def test_a_disabled_cameras_footage_is_listed_and_exported(recorder: Recorder) -> None:
    assert "porch" not in recorder.supervisors  # disabled: no supervisor, but its footage is on disk
    routes = OperatorRoutes(recorder)
    answer = call(routes.recordings, recordings_path(recorder, "porch"))
    assert isinstance(answer, Response) and answer.status == HTTPStatus.OK, answer
    data = json.loads(answer.body)
    assert data["camera"] == "porch" and len(data["segments"]) == 2 and data["restarts"] == []
    t0 = recorder.t0  # type: ignore[attr-defined]
    head = call(routes.export, f"/api/v1/export?camera=porch&from={t0:.0f}&to={t0 + 3:.0f}", "HEAD")
    assert head.status == HTTPStatus.OK and ("X-Recording-Segments", "2") in head.headers, head


def test_an_unknown_camera_is_not_found(recorder: Recorder) -> None:
    routes = OperatorRoutes(recorder)
    answer = call(routes.recordings, recordings_path(recorder, "nope"))
    assert answer.status == HTTPStatus.NOT_FOUND
    assert isinstance(answer, Response) and "unknown camera 'nope'" in json.loads(answer.body)["error"]
    assert call(routes.export, "/api/v1/export?camera=nope").status == HTTPStatus.NOT_FOUND


class _RemovedByAReload(dict):  # type: ignore[type-arg]
    """Supervisors as a reload leaves them halfway through a request: the camera was there when the
    request looked it up, and is gone when it looks again."""

    def __getitem__(self, key: Any) -> Any:
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        return default


def test_a_reload_removing_the_camera_mid_request_does_not_fail_it(recorder: Recorder) -> None:
    routes = OperatorRoutes(recorder)
    recorder.supervisors = _RemovedByAReload(recorder.supervisors)
    answer = call(routes.recordings, recordings_path(recorder, "cam1"))
    assert answer.status == HTTPStatus.OK, answer
    assert isinstance(answer, Response) and len(json.loads(answer.body)["segments"]) == 2


def _orphan(recorder: Recorder) -> None:
    """A removed camera's folder, found by the next resync as the daemon's periodic one would."""
    t0 = recorder.t0  # type: ignore[attr-defined]
    for start in (t0, t0 + SEGMENT_SECONDS, t0 + 2 * SEGMENT_SECONDS):
        path = recorder.storage.base_directory / "gone" / segment_file_name("gone", start)
        real_segment(path)
    recorder.storage.resync()


def test_without_a_camera_every_cameras_recordings_are_listed_orphans_last(recorder: Recorder) -> None:
    _orphan(recorder)
    routes = OperatorRoutes(recorder)
    t0 = recorder.t0  # type: ignore[attr-defined]
    answer = call(routes.recordings, f"/api/v1/recordings?from={t0 - 10:.0f}&to={t0 + 10:.0f}")
    assert isinstance(answer, Response) and answer.status == HTTPStatus.OK, answer
    data = json.loads(answer.body)
    assert (data["from"], data["to"]) == (t0 - 10, t0 + 10)
    listed = [(c["camera"], c["configured"], len(c["segments"])) for c in data["cameras"]]
    assert listed == [("cam1", True, 2), ("porch", True, 2), ("gone", False, 3)]
    assert data["cameras"][2]["stretches"] == [{"start": t0, "end": t0 + 3 * SEGMENT_SECONDS, "segments": 3}]
    # A bad time is still an error, camera or not.
    bad = call(routes.recordings, "/api/v1/recordings?from=tomorrow")
    assert bad.status == HTTPStatus.BAD_REQUEST


def test_an_orphaned_cameras_footage_is_listed_and_exported(recorder: Recorder) -> None:
    _orphan(recorder)
    routes = OperatorRoutes(recorder)
    answer = call(routes.recordings, recordings_path(recorder, "gone"))
    assert isinstance(answer, Response) and answer.status == HTTPStatus.OK, answer
    data = json.loads(answer.body)
    assert data["camera"] == "gone" and data["configured"] is False and len(data["segments"]) == 3
    t0 = recorder.t0  # type: ignore[attr-defined]
    head = call(routes.export, f"/api/v1/export?camera=gone&from={t0:.0f}&to={t0 + 5:.0f}", "HEAD")
    assert head.status == HTTPStatus.OK and ("X-Recording-Segments", "3") in head.headers, head


def test_a_clip_never_takes_the_descriptors_kept_for_recording(recorder: Recorder) -> None:
    free = [4]  # fewer than the clip's two segments and FFmpeg's pipes need
    routes = OperatorRoutes(recorder, descriptors_free=lambda: free[0])
    t0 = recorder.t0  # type: ignore[attr-defined]
    target = f"/api/v1/export?camera=cam1&from={t0:.0f}&to={t0 + 3:.0f}"
    refused = call(routes.export, target, "HEAD")
    assert isinstance(refused, Response) and refused.status == HTTPStatus.SERVICE_UNAVAILABLE, refused
    assert b"descriptors" in refused.body and ("Retry-After", "10") in refused.headers
    assert routes.exports_free == 2  # no slot was taken
    free[0] = 100
    assert call(routes.export, target, "HEAD").status == HTTPStatus.OK


def test_times_at_the_calendars_ends_are_400_naming_the_parameter(recorder: Recorder) -> None:
    routes = OperatorRoutes(recorder)
    for target in ("/?day=9999-12-31", "/?day=0001-01-01"):
        answer = call(routes.landing, target)
        assert answer.status == HTTPStatus.BAD_REQUEST and b"day" in answer.body, (target, answer)
    for name in ("recordings", "export"):
        for span in ("from=0001-01-01%2000:00&to=0001-01-01%2001:00", "from=9999-12-31%2022:00&to=9999-12-31%2023:00",
                     "from=0001-01-01%2000:00Z&to=0001-01-01%2001:00Z"):  # fmt: skip
            answer = call(getattr(routes, name), f"/api/v1/{name}?camera=cam1&{span}")
            assert answer.status == HTTPStatus.BAD_REQUEST and b"from" in answer.body, (name, span, answer)

"""The operator's routes: the status page, camera pictures, recordings as JSON and clip downloads.

Served by exporter/server.py behind its authentication, on exporter/web.py; every handler reads the
recorder's published snapshots and the storage's in-memory index, never walks the disk. Thumbnails and
clips run a short-lived FFmpeg each, bounded in number, in pools of their own (`pool_of`): a picture takes
up to ten seconds and a clip as long as its download, and neither may hold a scraper's thread.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, quote, urlsplit

from exporter.exchange import Request
from exporter.routes.status_page import PAGE_HEADERS, CameraPanel, days_with_footage, page_range, render_status_page
from exporter.web import SLOW_POOL
from recorder.footage.recordings import (
    TimeError,
    build_timeline,
    iso_utc,
    parse_time,
    segments_from_index,
    spans_of_rows,
)
from recorder.state.ports import RecorderView
from recorder.state.snapshots import CameraSnapshot
from recorder.storage.export import CLIP_FORMATS, CheckedClip, ExportError, check_clip, export_argv, plan_export
from recorder.storage.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0
# Descriptors a clip takes beyond one per segment it holds: FFmpeg's pipes, its log, the concat list.
CLIP_DESCRIPTORS = 8
# Times a request may name: the Unix epoch to a day before the calendar's end (year 9999), so that local
# time, a day's bounds and ISO text all exist for them; anything else is a 400 naming the parameter.
EARLIEST_TIME = 0.0
LATEST_TIME = 253402128000.0  # 9999-12-29T00:00:00Z
# What reading a user's time can raise beyond TimeError: dates at the calendar's ends (year 1, year 9999)
# overflow in local-time arithmetic.
_TIME_FAILURES = (TimeError, ValueError, OverflowError, OSError)
# A clip from the page is cut and streamed while the browser downloads it; two at once keep the disk
# free for the cameras. A range longer than a day is refused: that is a job for the CLI.
MAX_CONCURRENT_EXPORTS = 2
MAX_EXPORT_SECONDS = DAY_SECONDS
# JSON listings are bounded too: a week of 10 s segments.
MAX_RECORDINGS_SECONDS = 7 * DAY_SECONDS
THUMBNAIL_PATH_PREFIX, THUMBNAIL_PATH_SUFFIX = "/cameras/", "/latest.jpg"
EXPORT_PATH = "/api/v1/export"
# The pool clips are read in: a thread per clip being streamed, and one more so that a request beyond
# MAX_CONCURRENT_EXPORTS is told "busy" at once instead of waiting for a clip to end.
EXPORT_POOL = "export"
EXPORT_POOL_THREADS = MAX_CONCURRENT_EXPORTS + 1
# How much of FFmpeg's output is read at once: what is there, up to this (read1 never waits for more).
CLIP_READ_BYTES = 64 << 10

Handler = Callable[[Request], None]


class _BadRequest(Exception):
    pass


class _UnknownCamera(_BadRequest):
    """Answered 404: no such camera in the configuration nor in the storage index."""


class ClipCutShort(Exception):
    """FFmpeg stopped with an error after the clip's first bytes were sent."""


def _bounded(name: str, ts: float) -> float:
    if not EARLIEST_TIME <= ts <= LATEST_TIME:
        raise TimeError(f"{name}: outside 1970-01-01 to 9999-12-28")
    return ts


def _text(request: Request, status: HTTPStatus, message: str) -> None:
    request.respond(status, message.encode() + b"\n", "text/plain; charset=utf-8")


def _json(request: Request, status: HTTPStatus, body: object) -> None:
    request.respond(status, json.dumps(body).encode() + b"\n", "application/json")


def _status_of(problem: _BadRequest) -> HTTPStatus:
    return HTTPStatus.NOT_FOUND if isinstance(problem, _UnknownCamera) else HTTPStatus.BAD_REQUEST


def is_thumbnail_path(path: str) -> bool:
    return path.startswith(THUMBNAIL_PATH_PREFIX) and path.endswith(THUMBNAIL_PATH_SUFFIX)


class ClipStream:
    """FFmpeg cutting a clip into its stdout, as the chunks of a streamed answer (Request.respond_stream).

    FFmpeg starts here, before the answer's head is sent, so that a failure to start is still a 500.
    The web server reads it in its export pool as fast as the client takes the bytes (FFmpeg waits on a
    full pipe meanwhile) and calls close() exactly once at the end, however it ends: close() stops FFmpeg
    if it still runs (the client went away), removes the concat script and frees the export slot.
    """

    def __init__(self, ffmpeg: str, clip: CheckedClip, container: str, release: Callable[[], None]) -> None:
        self.camera = clip.plan.camera
        self._clip = clip  # its segments stay held (open) until close(): retention cannot take them away
        self._release = release
        self._closed = False
        self.produced_bytes = 0  # read from FFmpeg so far
        self._tmp = tempfile.TemporaryDirectory(prefix="camera-recorder-export-")
        try:
            concat = Path(self._tmp.name) / "pieces.ffconcat"
            concat.write_text(clip.plan.concat_list(clip.held.sources()), encoding="utf-8")
            self._errors: IO[bytes] = (Path(self._tmp.name) / "ffmpeg.log").open("w+b")
            try:
                self.process = subprocess.Popen(
                    export_argv(ffmpeg, concat, "pipe:1", container),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._errors,
                    pass_fds=clip.held.fds,
                )  # fmt: skip
            except BaseException:
                self._errors.close()
                raise
        except BaseException:
            self._tmp.cleanup()
            raise

    def __iter__(self) -> ClipStream:
        return self

    def __next__(self) -> bytes:
        stdout = self.process.stdout
        assert stdout is not None
        chunk = stdout.read1(CLIP_READ_BYTES)
        if chunk:
            self.produced_bytes += len(chunk)
            return chunk
        if self.process.wait() != 0:
            # The head is out: the web server cuts the answer short, and its log says why.
            raise ClipCutShort(f"clip of {self.camera} cut short by FFmpeg: {self._last_error()}")
        raise StopIteration

    def _last_error(self) -> str:
        self._errors.seek(0)
        lines = self._errors.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.process.poll() is None:
                log.info("clip of %s: the download stopped after %d bytes were cut; stopping FFmpeg",
                         self.camera, self.produced_bytes)  # fmt: skip
                self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._errors.close()
            self._tmp.cleanup()
        finally:
            self._clip.close()
            self._release()


class OperatorRoutes:
    """Handlers for `/`, `/cameras/<id>/latest.jpg`, `/api/v1/recordings` and `/api/v1/export`."""

    def __init__(
        self,
        recorder: RecorderView,
        *,
        metrics_path: str = "/metrics",
        clock: Callable[[], float] = time.time,
        descriptors_free: Callable[[], int] | None = None,
    ) -> None:
        self.recorder = recorder
        # Descriptors left before the reserve kept for recording (exporter.web.DescriptorBudget): a clip holds
        # each of its segments open, and must not take what an FFmpeg restart needs.
        self._descriptors_free = descriptors_free
        self.metrics_path = metrics_path
        self._clock = clock
        ffmpeg = recorder.tools.ffmpeg or "ffmpeg"
        self._ffmpeg = ffmpeg
        self._ffprobe = recorder.tools.ffprobe or "ffprobe"
        self.thumbnails = ThumbnailCache(ffmpeg)
        self._exports = threading.BoundedSemaphore(MAX_CONCURRENT_EXPORTS)
        self._segment_time = float(recorder.config.recording.segment_time)

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/"): self.landing,
            ("GET", "/api/v1/recordings"): self.recordings,
            ("GET", EXPORT_PATH): self.export,
        }

    def find_route(self, method: str, path: str) -> Handler | None:
        """Routes with a camera in the path: `/cameras/<id>/latest.jpg`."""
        if method in ("GET", "HEAD") and is_thumbnail_path(path):
            camera = path[len(THUMBNAIL_PATH_PREFIX) : -len(THUMBNAIL_PATH_SUFFIX)]
            return lambda request: self.latest_jpg(request, camera)
        return None

    @staticmethod
    def pools() -> dict[str, int]:
        """The pools these routes need beyond the scrapers' and the slow one: name -> threads."""
        return {EXPORT_POOL: EXPORT_POOL_THREADS}

    @staticmethod
    def pool_of(request: Request) -> str | None:
        """Which pool runs a request: clips in their own, pictures (an FFmpeg run of up to ten
        seconds) in the slow one; None for the scrapers' pool."""
        route = request.route
        if route == EXPORT_PATH:
            return EXPORT_POOL
        if is_thumbnail_path(route):
            return SLOW_POOL
        return None

    @property
    def exports_free(self) -> int:
        """Clips that may start now (of MAX_CONCURRENT_EXPORTS)."""
        return self._exports._value  # BoundedSemaphore keeps its count there; read-only here

    # -- helpers --------------------------------------------------------------------------------

    def _camera_ids(self) -> tuple[str, ...]:
        """Cameras whose footage may be asked for: every configured one, enabled or not (a disabled camera's
        footage stays on disk and in the storage index, and is what an operator may come looking for), then
        any other the storage index holds (orphans). Not the supervisors: they are the enabled cameras only."""
        configured = [camera.id for camera in self.recorder.config.cameras]
        storage = self.recorder.storage.snapshot()
        # Then the folders of cameras no longer configured (removed, renamed): their footage is kept until
        # retention ages it, and may be looked at and exported meanwhile.
        indexed = sorted([*storage.cameras, *storage.orphans])
        return tuple(dict.fromkeys([*configured, *indexed]))

    def _folder(self, camera: str) -> Path:
        return self.recorder.storage.base_directory / camera

    def _newest_segment(self, camera: str) -> Path | None:
        acc = self.recorder.storage.snapshot().cameras.get(camera)
        if acc is None or acc.newest_start is None:
            return None
        rows = self.recorder.storage.segments_between(camera, acc.newest_start, acc.newest_start + 1)
        return self._folder(camera) / rows[-1][1] if rows else None

    def _horizon(self, status: CameraSnapshot, now: float) -> float:
        """Where the record of finished segments ends: for a recording camera, where its open segment began
        (that segment is being written, not missing), else now."""
        last = status.last_segment_at
        if status.recording and last is not None and now - last < 2 * self._segment_time:
            return last
        return now

    @staticmethod
    def _query(request: Request) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}

    def _range(self, query: Mapping[str, str], limit: float) -> tuple[str, float, float]:
        camera = query.get("camera", "")
        known = self._camera_ids()
        if camera not in known:
            raise _UnknownCamera(f"camera: unknown camera {camera!r}; known: {', '.join(known)}")
        return (camera, *self._times(query, limit))

    def _times(self, query: Mapping[str, str], limit: float) -> tuple[float, float]:
        now = self._clock()
        try:
            start = _bounded("from", parse_time(query["from"], now)[0]) if "from" in query else now - DAY_SECONDS
            end = _bounded("to", parse_time(query["to"], now)[0]) if "to" in query else now
        except TimeError as exc:
            raise _BadRequest(str(exc)) from None
        except _TIME_FAILURES as exc:
            raise _BadRequest(f"from/to: not a time this recorder can hold ({exc})") from None
        if end <= start:
            raise _BadRequest("to: must be after from")
        if end - start > limit:
            raise _BadRequest(f"the range is longer than {limit / 3600:g} h; ask for less")
        return start, end

    # -- handlers -------------------------------------------------------------------------------

    def landing(self, request: Request) -> None:
        query = self._query(request)
        now = self._clock()
        day = query.get("day") or None
        span = query.get("span") or None
        try:
            start, end = page_range(day, span, now)
            _bounded("day", start)
            _bounded("day", end)
        except TimeError as exc:
            _text(request, HTTPStatus.BAD_REQUEST, str(exc))
            return
        except _TIME_FAILURES:
            _text(request, HTTPStatus.BAD_REQUEST, f"day: {day!r} is outside the years this recorder can show")
            return
        snap = self.recorder.snapshot()
        storage = self.recorder.storage
        panels = []
        cameras = [view.config.id for view in snap.cameras]
        for view in snap.cameras:
            cam = view.config.id
            rows = storage.segments_between(cam, start, end)
            kept = snap.storage.cameras.get(cam)
            timeline = build_timeline(
                cam,
                spans_of_rows(rows, self._segment_time),
                start,
                end,
                view.status.recent_restarts,
                now=self._horizon(view.status, now),
                oldest=kept.oldest_start if kept is not None else None,
            )
            newest_start = kept.newest_start if kept is not None else None
            url = None if newest_start is None else f"cameras/{quote(cam)}/latest.jpg?at={newest_start:.0f}"
            horizon = self._horizon(view.status, now)
            panels.append(CameraPanel(view, timeline, url, newest_start, horizon if horizon < now else None))

        def has_footage(lo: float, hi: float) -> bool:
            # segments_between also gives the segment before `lo`, which may end before it.
            return any(
                row[0] < hi and row[0] + (row[3] or self._segment_time) > lo
                for cam in cameras
                for row in storage.segments_between(cam, lo, hi)
            )

        days = days_with_footage(has_footage, now)
        page = render_status_page(
            snap, panels, day=day, start=start, end=end, metrics_path=self.metrics_path, span=span, days=days
        )
        headers = {"Cache-Control": "no-store", **PAGE_HEADERS}
        request.respond(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", headers)

    def latest_jpg(self, request: Request, camera: str) -> None:
        supervisor = self.recorder.supervisors.get(camera)
        if supervisor is None:
            _text(request, HTTPStatus.NOT_FOUND, f"no camera {camera!r}")
            return
        segment = self._newest_segment(camera)
        if segment is None:
            status = supervisor.snapshot
            _text(
                request,
                HTTPStatus.NOT_FOUND,
                f"camera {camera} has no completed segment yet (state {status.state.value}; "
                f"last error: {status.last_error or 'none'})",
            )
            return
        thumb = self.thumbnails.get(camera, segment)
        if thumb is None:
            request.respond(HTTPStatus.SERVICE_UNAVAILABLE, b"busy making pictures; retry\n", "text/plain",
                            {"Retry-After": "2"})  # fmt: skip
            return
        if thumb.jpeg is None:
            _text(request, HTTPStatus.NOT_FOUND, f"no picture from {thumb.segment}: {thumb.error}")
            return
        request.respond(HTTPStatus.OK, thumb.jpeg, "image/jpeg",
                        {"Cache-Control": "max-age=10", "X-Segment": thumb.segment})  # fmt: skip

    def recordings(self, request: Request) -> None:
        query = self._query(request)
        try:
            if "camera" in query:
                camera, start, end = self._range(query, MAX_RECORDINGS_SECONDS)
            else:
                camera, (start, end) = None, self._times(query, MAX_RECORDINGS_SECONDS)
        except _BadRequest as exc:
            _json(request, _status_of(exc), {"error": str(exc)})
            return
        window = {"from": start, "to": end, "from_iso": iso_utc(start), "to_iso": iso_utc(end)}
        if camera is not None:
            body = {"camera": camera, **window, **self._recordings_of(camera, start, end)}
        else:
            # Issue 21: every camera whose footage may be asked for, configured ones first, then orphans.
            body = {
                **window,
                "cameras": [{"camera": c, **self._recordings_of(c, start, end)} for c in self._camera_ids()],
            }
        _json(request, HTTPStatus.OK, body)

    def _recordings_of(self, camera: str, start: float, end: float) -> dict[str, object]:
        """One camera's segments, stretches, gaps and restarts in [start, end), and whether it is configured."""
        rows = self.recorder.storage.segments_between(camera, start, end)
        segments = segments_from_index(rows, camera, self._folder(camera), self._segment_time)
        segments = [s for s in segments if s.end > start]
        # One read of the supervisors: a reload replaces the mapping, and may have removed this camera since
        # the check above. A camera without a supervisor (disabled, or just removed) has footage and no
        # restarts, and its record ends now.
        supervisor = self.recorder.supervisors.get(camera)
        view = supervisor.snapshot if supervisor is not None else None
        storage = self.recorder.storage.snapshot()
        kept = storage.cameras.get(camera) or storage.orphans.get(camera)
        now = self._clock()
        timeline = build_timeline(
            camera,
            ((s.start, s.end, s.size) for s in segments),
            start,
            end,
            view.recent_restarts if view is not None else (),
            now=self._horizon(view, now) if view is not None else now,
            oldest=kept.oldest_start if kept is not None else None,
        )
        return {
            # False: a camera no longer in the configuration, whose folder retention still keeps.
            "configured": any(c.id == camera for c in self.recorder.config.cameras),
            "segments": [s.as_json() for s in segments],
            "stretches": [{"start": s.start, "end": s.end, "segments": s.segments} for s in timeline.stretches],
            "gaps": [{"start": g.start, "end": g.end, "seconds": round(g.seconds, 3)} for g in timeline.gaps],
            "restarts": [{"at": e.at, "reason": e.reason, "error": e.error} for e in timeline.restarts],
        }

    def export(self, request: Request) -> None:
        query = self._query(request)
        try:
            camera, start, end = self._range(query, MAX_EXPORT_SECONDS)
            container = query.get("format", "mp4")
            if container not in CLIP_FORMATS:
                raise _BadRequest(f"format: one of {', '.join(CLIP_FORMATS)}")
            rows = self.recorder.storage.segments_between(camera, start, end)
            segments = segments_from_index(rows, camera, self._folder(camera), self._segment_time)
            plan_export(camera, segments, start, end)  # nothing recorded there: 404 before any slot is taken
        except (_BadRequest, ExportError) as exc:
            _text(request, _status_of(exc) if isinstance(exc, _BadRequest) else HTTPStatus.NOT_FOUND, str(exc))
            return
        if self._descriptors_free is not None and self._descriptors_free() < len(segments) + CLIP_DESCRIPTORS:
            busy = b"too few file descriptors free for a clip (the cameras' reserve is not lent); retry\n"
            request.respond(HTTPStatus.SERVICE_UNAVAILABLE, busy, "text/plain", {"Retry-After": "10"})
            return
        if not self._exports.acquire(blocking=False):
            busy = b"two clips are being cut already; retry\n"
            request.respond(HTTPStatus.SERVICE_UNAVAILABLE, busy, "text/plain", {"Retry-After": "10"})
            return
        try:
            # Every piece held and probed before the head goes out: what the head promises is what streams.
            checked = check_clip(camera, segments, start, end, self._ffprobe)
        except ExportError as exc:  # pieces a stream copy cannot join, or none of them readable
            self._exports.release()
            _text(request, HTTPStatus.CONFLICT, str(exc))
            return
        except BaseException:
            self._exports.release()
            raise
        plan = checked.plan
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(plan.start))
        name = f"{plan.camera}_{stamp}Z_{plan.end - plan.start:.0f}s.{container}"
        gaps = "; ".join(f"{iso_utc(g.start)}/{iso_utc(g.end)}" for g in plan.gaps)
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Recording-Gaps": gaps or "none",
            "X-Recording-Segments": str(len(plan.pieces)),
            # Segments listed but gone, unreadable or shorter than recorded: their time is in the gaps above.
            "X-Recording-Damaged": ", ".join(seg.path.name for seg in checked.damaged) or "none",
        }
        content_type = "video/mp4" if container == "mp4" else "video/x-matroska"
        if request.command == "HEAD":
            # The head says what a GET would get; no FFmpeg is started for it.
            checked.close()
            self._exports.release()
            request.respond_stream(HTTPStatus.OK, content_type, headers, ())
            return
        try:
            clip = ClipStream(self._ffmpeg, checked, container, self._exports.release)
        except BaseException:
            checked.close()
            self._exports.release()
            raise
        # The size is known only at the end: it is sent chunked (or up to the close for HTTP/1.0).
        request.respond_stream(HTTPStatus.OK, content_type, headers, clip)

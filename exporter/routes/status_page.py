"""The landing page: every camera with its picture, state and a timeline of what it recorded.

Plain server-rendered HTML and inline SVG: no script, no stylesheet or font from elsewhere, so it works on
a LAN with no internet. Links are relative, so the page also works behind a reverse proxy's sub-path.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from recorder.domain.units import human_bytes
from recorder.domain.vocabulary import CameraState
from recorder.footage.recordings import TimeError, Timeline, day_bounds, local_text
from recorder.state.snapshots import CameraView, RecorderSnapshot

TIMELINE_WIDTH = 1000  # SVG user units across the timeline; the browser scales it to the page
TIMELINE_HEIGHT = 34
BAR_TOP, BAR_HEIGHT = 4, 18
# Export links are offered per hour: an hour of 1440p is a download a browser handles.
LINK_SECONDS = 3600
# The timeline's zoom (`?span=`): the last hour shows a 15-minute stretch a quarter wide, not a 1-px sliver.
SPANS = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0}
DEFAULT_SPAN = "24h"
# (span up to, axis label every) seconds: about six to eight labels whatever the zoom.
AXIS_STEPS = ((3600.0, 600), (6 * 3600.0, 3600), (float("inf"), 3 * 3600))
DAYS_OFFERED = 8  # today and the seven days before, those of them with footage
# Sent with the page: it is plain HTML, inline styles and SVG, pictures and forms of this server only, so the
# policy allows just that (no script at all), and no other site may frame it (clickjacking an export form).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def page_range(day: str | None, span: str | None, now: float) -> tuple[float, float]:
    """The stretch of time the page shows: a local day (`?day=YYYY-MM-DD`), else the last `?span=` (1h, 6h,
    24h; 24h by default). TimeError naming the parameter for anything else."""
    if day:
        return day_bounds(day)
    key = span or DEFAULT_SPAN
    if key not in SPANS:
        raise TimeError(f"span: expected one of {', '.join(SPANS)}, got {key!r}")
    return now - SPANS[key], now


def days_with_footage(has_footage: Callable[[float, float], bool], now: float) -> list[str]:
    """The days (local YYYY-MM-DD, newest first) of the last DAYS_OFFERED that hold a recording."""
    today = datetime.fromtimestamp(now).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(DAYS_OFFERED)]
    return [day for day in days if has_footage(*day_bounds(day))]


@dataclass(frozen=True)
class CameraPanel:
    """What the page shows of one camera."""

    view: CameraView
    timeline: Timeline
    thumbnail_url: str | None  # None: no completed segment yet
    newest_segment_at: float | None
    recording_since: float | None = None  # start of the segment being written, when the camera records


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0.0, now - timestamp)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _hm(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


def _between(start: float, end: float) -> str:
    """`start–end` readable at any length: with seconds when minutes alone would read 09:19–09:19."""
    if end - start < 600 or _hm(start) == _hm(end):
        return f"{local_text(start, '%H:%M:%S')}–{local_text(end, '%H:%M:%S')}"
    return f"{_hm(start)}–{_hm(end)}"


def export_url(camera: str, start: float, end: float) -> str:
    return "api/v1/export?" + urlencode({"camera": camera, "from": f"{start:.0f}", "to": f"{end:.0f}"})


def timeline_svg(timeline: Timeline, now: float, recording_since: float | None = None) -> str:
    """One camera's recorded stretches (green), gaps (red), restarts (ticks) and hourly download links."""
    span = timeline.end - timeline.start
    scale = TIMELINE_WIDTH / span

    def x(ts: float) -> float:
        return round((min(max(ts, timeline.start), timeline.end) - timeline.start) * scale, 2)

    parts = [
        f'<svg class="timeline" viewBox="0 0 {TIMELINE_WIDTH} {TIMELINE_HEIGHT}" preserveAspectRatio="none" '
        f'role="img" aria-label="recordings of {_e(timeline.camera)}">',
        f'<rect x="0" y="{BAR_TOP}" width="{TIMELINE_WIDTH}" height="{BAR_HEIGHT}" class="none"/>',
    ]
    for gap in timeline.gaps:
        parts.append(
            f'<rect x="{x(gap.start)}" y="{BAR_TOP}" width="{max(x(gap.end) - x(gap.start), 0.5)}" '
            f'height="{BAR_HEIGHT}" class="gap"><title>gap {_between(gap.start, gap.end)} '
            f"({_duration(gap.seconds)})</title></rect>"
        )
    for stretch in timeline.stretches:
        parts.append(
            f'<rect x="{x(stretch.start)}" y="{BAR_TOP}" width="{max(x(stretch.end) - x(stretch.start), 1.5)}" '
            f'height="{BAR_HEIGHT}" class="rec"><title>recorded {_between(stretch.start, stretch.end)}, '
            f"{stretch.segments} segments</title></rect>"
        )
    if recording_since is not None and recording_since < min(now, timeline.end):
        parts.append(
            f'<rect x="{x(recording_since)}" y="{BAR_TOP}" width="{x(now) - x(recording_since)}" '
            f'height="{BAR_HEIGHT}" class="live"><title>recording now (segment being written)</title></rect>'
        )
    for event in timeline.restarts:
        why = f"restart ({event.reason}) at {local_text(event.at, '%H:%M:%S')}"
        if event.error:
            why += f": {event.error}"
        parts.append(
            f'<line x1="{x(event.at)}" x2="{x(event.at)}" y1="0" y2="{BAR_TOP + BAR_HEIGHT + 4}" class="restart">'
            f"<title>{_e(why)}</title></line>"
        )
    # A transparent link over every hour that holds a recording: the download of that hour.
    hour = timeline.start - timeline.start % LINK_SECONDS
    stretches = timeline.stretches
    i = 0
    while hour < min(timeline.end, now):
        hour_end = hour + LINK_SECONDS
        while i < len(stretches) and stretches[i].end <= hour:
            i += 1
        if i < len(stretches) and stretches[i].start < hour_end:
            lo, hi = max(hour, timeline.start), min(hour_end, timeline.end, now)
            parts.append(
                f'<a href="{_e(export_url(timeline.camera, lo, hi))}" class="dl">'
                f'<rect x="{x(lo)}" y="0" width="{x(hi) - x(lo)}" height="{TIMELINE_HEIGHT}">'
                f"<title>download {_between(lo, hi)}</title></rect></a>"
            )
        hour = hour_end
    parts.append("</svg>")
    return "".join(parts)


def _axis(start: float, end: float) -> str:
    """Time labels under the timelines, in this machine's local time: every 10 min, hour or 3 hours by zoom."""
    step = next(every for up_to, every in AXIS_STEPS if end - start <= up_to)
    labels = []
    first = datetime.fromtimestamp(start).replace(minute=0, second=0, microsecond=0)
    tick = first
    while tick.timestamp() < end:
        left = (tick.timestamp() - start) / (end - start) * 100
        on_step = (tick.hour * 3600 + tick.minute * 60) % step == 0
        if on_step and 0 <= left <= 95:
            labels.append(f'<span style="left:{left:.2f}%">{tick.strftime("%H:%M")}</span>')
        tick += timedelta(seconds=min(step, 3600))
    return f'<div class="axis">{"".join(labels)}</div>'


def _no_picture(state: CameraState, last_error: str | None) -> str:
    """The placeholder where the picture goes: why there is none yet, in two lines (blocks, not a <br> that
    a flex box drops, which read "recordingno segment completed yet")."""
    if last_error:
        why = last_error
    elif state is CameraState.RECORDING:
        why = "its first segment is being recorded; pictures come from completed segments"
    else:
        why = "no segment completed yet"
    return f'<div class="nothumb"><p>No picture yet: {_e(state.value)}</p><p><small>{_e(why)}</small></p></div>'


def _panel(panel: CameraPanel, now: float) -> str:
    view = panel.view
    status = view.status
    cam = view.config.id
    if panel.thumbnail_url is not None:
        picture = (
            f'<a href="{_e(panel.thumbnail_url)}"><img class="thumb" src="{_e(panel.thumbnail_url)}" '
            f'alt="latest picture of {_e(cam)}" width="480" height="270" loading="lazy"></a>'
        )
    else:
        picture = _no_picture(status.state, status.last_error)
    timeline = panel.timeline
    restarts = sum(status.restarts.values())
    gaps = ", ".join(f"{_between(g.start, g.end)} ({_duration(g.seconds)})" for g in timeline.gaps[-5:])
    reasons = ", ".join(f"{reason} {count}" for reason, count in status.restarts.items())
    details = [
        ("state", status.state.value),
        ("fps", f"{status.fps:.1f}" + (f" / {view.config.framerate}" if view.config.framerate else "")),
        ("last segment", _ago(status.last_segment_at, now)),
        ("recorded", f"{_duration(timeline.recorded_seconds)} of this timeline"),
        ("gaps", f"{len(timeline.gaps)}" + (f" (latest: {gaps})" if gaps else "")),
        ("restarts", f"{restarts}" + (f" ({reasons})" if restarts else "")),
        ("last error", status.last_error or "-"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in details)
    start_value = datetime.fromtimestamp(max(timeline.start, min(now, timeline.end) - 600)).strftime("%Y-%m-%dT%H:%M")
    end_value = datetime.fromtimestamp(min(now, timeline.end)).strftime("%Y-%m-%dT%H:%M")
    recordings_query = urlencode({"camera": cam, "from": f"{timeline.start:.0f}", "to": f"{timeline.end:.0f}"})
    form = (
        '<form class="export" method="get" action="api/v1/export">'
        f'<input type="hidden" name="camera" value="{_e(cam)}">'
        f'Clip from <input type="datetime-local" name="from" value="{start_value}"> '
        f'to <input type="datetime-local" name="to" value="{end_value}"> '
        '<button type="submit">Download</button> '
        f'<a href="api/v1/recordings?{_e(recordings_query)}">'
        "segments as JSON</a></form>"
    )  # fmt: skip
    return (
        f'<section class="camera" id="camera-{_e(cam)}" data-camera="{_e(cam)}" data-state="{_e(status.state.value)}">'
        f'<h2>{_e(view.config.name)} <small>({_e(cam)})</small> <span class="state {_e(status.state.value)}">'
        f"{_e(status.state.value)}</span></h2>"
        f'<div class="row">{picture}<table class="details">{rows}</table></div>'
        f"{timeline_svg(timeline, now, panel.recording_since)}{_axis(timeline.start, timeline.end)}{form}</section>"
    )


STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
.camera{border:1px solid #ccc;border-radius:6px;padding:.5em 1em;margin:1em 0}
.camera h2{font-size:1.2em;margin:.3em 0}
.row{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
.thumb,.nothumb{width:480px;max-width:100%;height:auto;background:#eee}
.nothumb{height:270px;display:flex;flex-direction:column;align-items:center;justify-content:center;
text-align:center;color:#a00}.nothumb p{margin:.2em 1em}
.zoom a,.zoom strong{margin:0 .2em}
.details th{text-align:left;padding-right:1em;font-weight:normal;color:#666}
.timeline{width:100%;height:34px;display:block;margin-top:.5em}
.timeline .none{fill:#eee}.timeline .rec{fill:#3a3}.timeline .gap{fill:#d44}
.timeline .live{fill:#9d9}.timeline .restart{stroke:#f80;stroke-width:2}
.timeline .dl rect{fill:transparent}.timeline .dl:hover rect{fill:rgba(0,0,0,.15)}
.axis{position:relative;height:1.2em;font-size:.8em;color:#666}.axis span{position:absolute}
.state{font-size:.8em;padding:1px 6px;border-radius:3px;background:#ddd}
.state.recording{background:#cfc}.state.backoff,.state.stalled,.state.failed{background:#fcc}
.legend span{display:inline-block;width:1em;height:.8em;margin:0 .3em 0 1em}
table.summary{border-collapse:collapse}.summary td,.summary th{border:1px solid #ccc;padding:2px 8px}
"""


def render_status_page(
    snap: RecorderSnapshot,
    panels: Sequence[CameraPanel],
    *,
    day: str | None,
    start: float,
    end: float,
    metrics_path: str = "/metrics",
    span: str | None = None,
    days: Sequence[str] | None = None,
) -> str:
    """The page at `/`; `metrics_path` is --web.telemetry-path, linked relative to the page. `span` is the
    zoom asked for (without `day`), `days` the days with footage to link (None: the last DAYS_OFFERED)."""
    now = time.time()
    zone = datetime.fromtimestamp(now).astimezone().strftime("%Z, UTC%z")
    shown = None if day else (span or DEFAULT_SPAN)
    if day:
        title = f"Day {day}"
    else:
        hours = f"{SPANS[shown] / 3600:g} hour" + ("" if SPANS[shown] == 3600 else "s")
        title = f"Last {hours} ({local_text(start, '%Y-%m-%d %H:%M')} – {local_text(end, '%H:%M')})"
    if days is None:
        today = datetime.fromtimestamp(now).date()
        days = [(today - timedelta(days=n)).isoformat() for n in range(DAYS_OFFERED)]

    def zoom_link(key: str) -> str:
        label = f"{SPANS[key] / 3600:g} h"
        if key == shown:
            return f'<strong aria-current="page">{label}</strong>'
        return f'<a href="?{urlencode({"span": key})}">{label}</a>'

    zoom = "Last " + " · ".join(zoom_link(key) for key in SPANS)
    day_links = (
        " ".join(
            f'<strong aria-current="page">{_e(d)}</strong>'
            if d == day
            else f'<a href="?{urlencode({"day": d})}">{d}</a>'
            for d in days
        )
        or "no recordings in the last days"
    )
    storage = snap.storage
    free = (
        f"{human_bytes(storage.filesystem_avail_bytes)} free of {human_bytes(storage.filesystem_size_bytes)}"
        if storage.filesystem_avail_bytes is not None and storage.filesystem_size_bytes
        else "filesystem not checked yet"
    )
    body = "".join(_panel(p, now) for p in panels) or "<p>No cameras are enabled.</p>"
    metrics_link = metrics_path.lstrip("/")  # relative, so the page works behind a path-prefixing proxy
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>camera-recorder</title><style>{STYLE}</style></head>
<body><h1>camera-recorder</h1>
<p>Version {_e(snap.version)}, FFmpeg {_e(snap.ffmpeg_version)}, hot-plug: {_e(snap.hotplug_mode)}.
Recordings in {_e(storage.path)}: {storage.files} files, {_e(human_bytes(storage.bytes))}; {_e(free)}
(binary units: 1 GiB = 1024 MiB, as --stats).</p>
<p><a href="{_e(metrics_link)}">Metrics</a> · <a href="-/healthy">Health</a> · <a href="-/ready">Readiness</a></p>
<form method="get" action="."><strong>{_e(title)}</strong>, times in {_e(zone)}.
<span class="zoom">{zoom}</span> · days with recordings: {day_links} ·
<label>day <input type="date" name="day" value="{_e(day or "")}"></label>
<button type="submit">Show</button></form>
<p class="legend"><span style="background:#3a3"></span>recorded<span style="background:#d44"></span>gap
<span style="background:#9d9"></span>being written<span style="background:#eee"></span>before the oldest kept
recording<span style="background:#f80;width:3px"></span>restart (hover for the reason) ·
click a stretch to download that hour</p>
{body}
</body></html>
"""

"""End to end: real recorders scraped every second by a real Prometheus running the bundled rules, whose alerts
a real Alertmanager routes back to the recorder's webhook.

Every rule and every dashboard query is evaluated by Prometheus on live recorders: it parses and returns series,
or it is listed in EMPTY_WHEN_HEALTHY with the reason and the provoked fault that makes it return data. The
faults are real: FFmpeg killed and frozen, a clip and a device node taken away, a slow source, a webhook call
with a wrong token, a small tmpfs filled past the retention threshold and to the last byte, a daemon restarted.
The rules run as bundled except for `for:`, shortened in a copy (FOR_DURATIONS); thresholds and windows are kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import daemon_harness
import pytest
from conftest import wait_for
from daemon_harness import Daemon, free_port, write_config
from e2e_servers import (
    JOB,
    Alertmanager,
    Prometheus,
    Sample,
    alertmanager_config,
    bundled_rules,
    dashboard_queries,
    prom_labels,
    shortened_rules,
    tmpfs,
    used_ratio,
    window,
)

from recorder.daemon.housekeeping import hottest_cpu_sensor
from recorder.footage.segments import segment_file_name

TOKEN = "e2e-webhook-token"
MIB = 1 << 20
# The test copy of the rules: `for:` in seconds instead of minutes (1s unless named). The ordering that matters
# is kept: above the retention threshold the recorder's own policies get a few evaluations before the alert.
FOR_DURATIONS = {
    "CameraRecorderCameraNotRecording": "2s",
    "CameraRecorderCameraStalled": "2s",
    "CameraRecorderEncodeFpsLow": "2s",
    "CameraRecorderDiskAboveRetentionThreshold": "3s",
}
RULES = {rule.get("alert") or rule["record"]: rule for rule in bundled_rules()}
ALERT_NAMES = sorted(name for name, rule in RULES.items() if "alert" in rule)
HOST_HAS_CPU_SENSOR = hottest_cpu_sensor() is not None

# What each fault is, and the test that provokes it. "relaxed" faults are not provoked: the threshold is
# relaxed instead (RELAXED_THRESHOLDS), which proves the selectors and joins match real series.
FAULTS = {
    "no_targets": "Prometheus runs with no target at all (module fixture; test_an_empty_fleet_...)",
    "ffmpeg_killed": "one camera's FFmpeg SIGKILLed three times (test_killed_ffmpeg_...)",
    "ffmpeg_frozen": "every FFmpeg of one camera SIGSTOPped as it starts (test_frozen_ffmpeg_...)",
    "clip_removed": "a file camera's clip renamed away and its FFmpeg killed (test_removed_clip_...)",
    "device_removed": "a device camera's node deleted (test_removed_device_...)",
    "slow_source": "a file camera whose clip has 10 fps, configured for 25 (test_slow_source_...)",
    "webhook_rejected": "a webhook request with a wrong bearer token (test_wrong_webhook_token_...)",
    "disk_full": "a 32 MiB tmpfs filled past the retention threshold (test_disk_above_threshold_...)",
    "disk_unwritable": "the tmpfs filled to its last byte (test_full_filesystem_...)",
    "daemon_restarted": "a daemon stopped and started on its port three times (test_daemon_down_...)",
    "relaxed": "not provoked: evaluated with its threshold relaxed (test_unprovoked_alerts_...)",
    "host_sensor": "this host has no CPU temperature sensor: the series does not exist here",
}


@dataclass(frozen=True)
class Empty:
    reason: str
    fault: str  # a FAULTS key


EMPTY_WHEN_HEALTHY: dict[str, Empty] = {
    "alert:CameraRecorderCameraNotRecording": Empty("every camera records", "clip_removed"),
    "alert:CameraRecorderCameraStalled": Empty("FFmpeg makes progress", "ffmpeg_frozen"),
    "alert:CameraRecorderFFmpegRestarting": Empty("no FFmpeg restarts", "ffmpeg_killed"),
    "alert:CameraRecorderEncodeFpsLow": Empty("sources deliver their configured rate", "slow_source"),
    "alert:CameraRecorderFramesDropped": Empty(
        "FFmpeg drops no frame of a test pattern or a clip replayed in real time (only irregular camera "
        "timestamps make it drop; no source here does that)",
        "relaxed",
    ),
    "alert:CameraRecorderSegmentOverdue": Empty(
        "segments complete every 2 s; overdue needs 1.5 x segment_time + 300 s without one", "relaxed"
    ),
    "alert:CameraRecorderCameraAbsent": Empty("every source is present", "device_removed"),
    "alert:CameraRecorderRecordingGap": Empty("no camera misses recording time", "ffmpeg_killed"),
    "alert:CameraRecorderDown": Empty("every target is up", "daemon_restarted"),
    "alert:CameraRecorderTargetsAbsent": Empty("the job has targets", "no_targets"),
    "alert:CameraRecorderCpuTooHot": Empty(
        "no CPU runs at 90 °C" if HOST_HAS_CPU_SENSOR else "no CPU sensor on this host",
        "relaxed" if HOST_HAS_CPU_SENSOR else "host_sensor",
    ),
    "alert:CameraRecorderDaemonRestarting": Empty("the daemon started once", "daemon_restarted"),
    "alert:CameraRecorderCollectorFailing": Empty(
        "every sub-collector succeeds (one fails only on a bug in it)", "relaxed"
    ),
    "alert:CameraRecorderWebhookRejected": Empty("no bad webhook request", "webhook_rejected"),
    "alert:CameraRecorderDiskLowSpace": Empty("the disk is far from full", "disk_full"),
    "alert:CameraRecorderDiskAboveRetentionThreshold": Empty("the disk is far from full", "disk_full"),
    "alert:CameraRecorderDiskFillingUp": Empty("the disk is below the retention threshold", "disk_full"),
    "alert:CameraRecorderRetentionCapacityTooSmall": Empty(
        "the healthy recorder's disk holds more than its 0.1-day max age", "disk_full"
    ),
    "alert:CameraRecorderRetentionNotRunning": Empty("retention passes run every second; needs 2 h", "relaxed"),
    "alert:CameraRecorderStorageNotWritable": Empty("the recordings folder is writable", "disk_unwritable"),
    # The disk recorder here uses on_threshold: stop_recording, so a full disk pauses its camera instead;
    # tests/recorder/storage/test_storage_faults.py provokes both with the real daemon.
    "alert:CameraRecorderCameraStorageError": Empty("every camera folder takes writes", "relaxed"),
    "alert:CameraRecorderDiskFull": Empty("no FFmpeg met a full disk", "relaxed"),
    "alert:CameraRecorderSupervisorFaults": Empty("no supervision round fails (a bug, or out of fds)", "relaxed"),
    # tests/recorder/camera/test_clock_step.py steps a real FFmpeg's clock back (libfaketime) and checks the restart.
    "alert:CameraRecorderClockSteppedBack": Empty("the wall clock never steps back here", "relaxed"),
    # The healthy recorder transcodes one old segment at start, verified, and nothing else becomes due.
    "alert:CameraRecorderTranscodeBacklogGrowing": Empty("its backlog only shrinks (1, then 0)", "relaxed"),
    "alert:CameraRecorderTranscodeVerificationFailing": Empty("its one transcode passes verification", "relaxed"),
    "alert:CameraRecorderTranscodePausedAllWindow": Empty("it runs in its window; and needs a day up", "relaxed"),
    "camera-recorder-fleet/Active camera-recorder alerts/A": Empty("no alert is pending or firing", "ffmpeg_killed"),
}
if not HOST_HAS_CPU_SENSOR:
    EMPTY_WHEN_HEALTHY["camera-recorder-fleet/Hottest CPU/A"] = Empty("no CPU sensor on this host", "host_sensor")

# Alerts not provoked here: (the threshold as bundled, a relaxed one that holds on a healthy recorder).
RELAXED_THRESHOLDS = {
    "CameraRecorderFramesDropped": ("> 0", ">= 0"),
    "CameraRecorderSegmentOverdue": ("> 1.5 * camera_recorder_segment_time_seconds + 300", "> -1"),
    "CameraRecorderCollectorFailing": ("== 0", "== 1"),
    "CameraRecorderRetentionNotRunning": ("> 7200", "> -1"),
    "CameraRecorderCpuTooHot": ("> 90", "> -300"),
    "CameraRecorderCameraStorageError": ("== 1", "== 0"),
    "CameraRecorderTranscodeBacklogGrowing": ("> 0", "> -1e9"),
    "CameraRecorderTranscodeVerificationFailing": ("> 0", ">= 0"),
    "CameraRecorderTranscodePausedAllWindow": ("== 1", "> -2"),
    "CameraRecorderDiskFull": ("> 0", ">= 0"),
    "CameraRecorderSupervisorFaults": ("> 0", ">= 0"),
    "CameraRecorderClockSteppedBack": ("> 0", ">= 0"),
}


@dataclass(frozen=True)
class Expression:
    key: str  # "alert:<name>", "record:<name>", or a dashboard query's key
    expr: str
    label: str | None = None  # label_values(): the label every series must carry


def expressions() -> list[Expression]:
    out = [Expression(f"{'alert' if 'alert' in r else 'record'}:{name}", r["expr"]) for name, r in RULES.items()]
    out += [Expression(q.key, q.expr, q.label) for q in dashboard_queries()]
    return out


# -- the stack ---------------------------------------------------------------------------------------------


@dataclass
class Stack:
    tmp: Path
    prom: Prometheus
    am: Alertmanager
    healthy: Daemon  # never touched: the healthy system
    faults: Daemon  # crashy, frozen, clipcam, slowcam, devcam
    disk: Daemon  # records onto `disk_root`, a 32 MiB tmpfs
    pinned: Daemon  # restarted on `pinned_port` by the restart test
    pinned_port: int
    disk_root: Path
    clip: Path
    device: Path
    token_file: Path
    targets_absent_at: float  # when CameraRecorderTargetsAbsent fired, before any target was configured

    @staticmethod
    def instance(daemon: Daemon) -> str:
        return f"127.0.0.1:{daemon.port}"


def make_clip(path: Path, fps: int) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate={fps}", "-t", "4",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


def segment_name(camera: str, start: float) -> str:
    return segment_file_name(camera, start)


def write_file(path: Path, size: int) -> None:
    """Written (not sparse), so that tmpfs really allocates it."""
    with path.open("wb") as f:
        f.write(b"\xa5" * size)


def start_daemon(config: Path, recording: tuple[str, ...]) -> Daemon:
    daemon = Daemon(config)
    for cam in recording:
        wait_for(
            lambda cam=cam: daemon.value("camera_recorder_camera_recording", camera=cam) == 1,
            timeout=30,
            what=f"camera {cam} of {config.name} to record",
        )
    return daemon


def start_pinned(config: Path, port: int) -> Daemon:
    """A daemon on a given port (a restart keeps its `instance`); the harness otherwise picks a free one."""
    with mock.patch.object(daemon_harness, "free_port", lambda: port):
        daemon = Daemon(config)
    assert daemon.port == port
    return daemon


TEST_PATTERN = {"test_pattern": True, "resolution": "160x120", "framerate": 25}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    exits: dict[str, int] = {}

    def stop(name: str, get: Callable[[], Daemon]) -> None:
        exits[name] = get().stop()

    with contextlib.ExitStack() as cleanup:
        token_file = tmp / "webhook-token"
        token_file.write_text(TOKEN + "\n")
        rules = shortened_rules(tmp / "rules", FOR_DURATIONS)
        am_port = free_port()
        started = time.time()
        prom = Prometheus(tmp / "prometheus", rules, f"127.0.0.1:{am_port}")
        cleanup.callback(prom.stop)
        exporter = {"webhook_token_file": str(token_file)}

        # Night transcoding on the healthy recorder: its window is open now and one 2-hour-old segment is due
        # (min_age_days 1 h, max age 2.4 h), so every transcoding series exists; its own segments are not due
        # within the test.
        old = tmp / "healthy-rec" / "cam1" / segment_name("cam1", time.time() - 2 * 3600)
        old.parent.mkdir(parents=True)
        make_clip(old, 25)
        # And the footage of a camera since removed from its config (issue 19): kept until cleanup_days ages
        # it (an hour old here, of 2.4 h), so the orphaned_* series exist on the healthy recorder too.
        orphan = tmp / "healthy-rec" / "porch" / segment_name("porch", time.time() - 3600)
        orphan.parent.mkdir()
        write_file(orphan, 4096)
        now = datetime.now()
        transcoding = {
            "enabled": True, "codec": "libx265", "preset": "ultrafast", "quality": 22, "min_age_days": 1 / 24,
            "run_schedule_start": (now - timedelta(hours=1)).strftime("%H:%M"),
            "run_schedule_end": (now + timedelta(hours=2)).strftime("%H:%M"),
            "max_cpu_percent": 100, "max_io_wait": 100, "min_free_space_gb": 0, "verify_quality": False,
            "min_savings_percent": 0,  # the small test clip saves less than the default 20 %
        }  # fmt: skip
        healthy = start_daemon(
            write_config(
                tmp / "healthy.yaml",
                tmp / "healthy-rec",
                # A generous stall timeout: a busy test machine must not make the healthy recorder restart FFmpeg.
                supervisor={"stall_timeout": 10},
                storage={"cleanup_days": 0.1},
                exporter=exporter,
                transcoding=transcoding,
            ),
            ("cam1", "cam2"),
        )
        cleanup.callback(stop, "healthy", lambda: healthy)

        clip = make_clip(tmp / "clip.mkv", 25)
        device = tmp / "video-standin"
        device.write_bytes(b"not a V4L2 device")
        faults_config = write_config(
            tmp / "faults.yaml",
            tmp / "faults-rec",
            cameras={
                "crashy": TEST_PATTERN,
                "frozen": TEST_PATTERN,
                "clipcam": {"file": str(clip)},
                "slowcam": {"file": str(make_clip(tmp / "slow.mkv", 10)), "framerate": 25},
                "devcam": {"device": str(device)},
            },
            supervisor={"backoff_max": 1, "presence_check_interval": 0.5},
            storage={"cleanup_days": 0.1},
            system={"udev": False},
            exporter=exporter,
        )
        faults = start_daemon(faults_config, ("crashy", "frozen", "clipcam", "slowcam"))
        cleanup.callback(stop, "faults", lambda: faults)

        # The disk recorder: 24 old segments of 0.5 MiB (37.5% of 32 MiB) and files retention must never touch.
        disk_root = cleanup.enter_context(tmpfs(tmp / "disk", "32m"))
        cam_dir = disk_root / "diskcam"
        cam_dir.mkdir()
        three_days_ago = time.time() - 3 * 86400
        for i in range(24):
            write_file(cam_dir / segment_name("diskcam", three_days_ago + i * 3600), MIB // 2)
        (cam_dir / "notes.txt").write_text("not a segment\n")
        write_file(cam_dir / segment_name("othercam", three_days_ago - 86400), 4096)
        disk_config = write_config(
            tmp / "disk.yaml",
            disk_root,
            # A tiny picture: the test's own files, not the camera, decide the disk usage.
            cameras={"diskcam": {"test_pattern": True, "resolution": "64x48", "framerate": 5}},
            storage={
                "disk_usage_threshold": 50,
                "low_space_warning": 30,
                "cleanup_days": 30,
                # Above the threshold the recorder pauses its cameras and deletes nothing itself (its
                # disk_pressure policy is off): freeing space is left to the alert and the webhook, which
                # stop_recording allows only when told so, and never below the pressure target.
                "on_threshold": "stop_recording",
                "delete_on_alert": True,
                "pressure_target": 25,
            },
            exporter=exporter,
        )
        disk = start_daemon(disk_config, ("diskcam",))
        cleanup.callback(stop, "disk", lambda: disk)

        pinned_port = free_port()
        pinned = start_pinned(
            write_config(tmp / "pinned-0.yaml", tmp / "pinned-rec", cameras={"pin": TEST_PATTERN}), pinned_port
        )
        holder = {"pinned": pinned}
        cleanup.callback(stop, "pinned", lambda: holder["pinned"])

        recorders = {Stack.instance(d): d.url for d in (healthy, faults, disk, pinned)}
        am = Alertmanager(tmp / "alertmanager", am_port, alertmanager_config(recorders, token_file))
        cleanup.callback(am.stop)

        # No target yet: the empty fleet must be alerted on.
        targets_absent_at = wait_for(
            lambda: first_firing(prom, "CameraRecorderTargetsAbsent", started, job=JOB),
            timeout=60,
            what="CameraRecorderTargetsAbsent with no target",
        )
        prom.set_targets(list(recorders))
        s = Stack(
            tmp, prom, am, healthy, faults, disk, pinned, pinned_port, disk_root, clip, device, token_file,
            targets_absent_at,
        )  # fmt: skip
        yield s
        holder["pinned"] = s.pinned
    # Every daemon stopped cleanly (SIGTERM, FFmpeg finalized its segment).
    assert exits == {"healthy": 0, "faults": 0, "disk": 0, "pinned": 0}


# -- helpers -----------------------------------------------------------------------------------------------


def for_instance(rows: list[Sample], instance: str) -> list[Sample]:
    """Rows about `instance`; rows without an instance label (aggregations) are about every instance."""
    return [r for r in rows if r.labels.get("instance", instance) == instance]


def first_firing(prom: Prometheus, alertname: str, since: float, **labels: str) -> float | None:
    """The first evaluation at or after `since` at which the alert fired with these labels, or None."""
    selector = prom_labels(alertname=alertname, alertstate="firing", **labels)
    rows = prom.query(f"ALERTS{selector}[{window(since)}]")
    times = [t for row in rows for t, _ in row.values if t >= since]
    return min(times) if times else None


def wait_fired(stack: Stack, alertname: str, since: float, timeout: float = 60.0, **labels: str) -> float:
    """Wait until the alert fires with these labels; its bundled expression, evaluated at that moment,
    returns the series. Returns the time it fired."""
    prom = stack.prom
    try:
        at = wait_for(
            lambda: first_firing(prom, alertname, since, **labels), timeout=timeout, what=f"{alertname}{labels}"
        )
    except AssertionError as exc:
        active = [a for a in prom.alerts() if a["labels"].get("alertname") == alertname]
        raise AssertionError(
            f"{exc}\nits alerts now: {active}\nits expression now: {expr_rows(stack, alertname)}"
        ) from None
    rows = prom.query(RULES[alertname]["expr"], at=at)
    assert any(r.matches(**labels) for r in rows), f"{alertname} fired at {at} but its expression gave {rows}"
    return at


def expr_rows(stack: Stack, alertname: str) -> list[Sample]:
    return stack.prom.query(RULES[alertname]["expr"])


def wait_resolved(stack: Stack, alertname: str, timeout: float = 60.0, **labels: str) -> None:
    selector = prom_labels(alertname=alertname, **labels)
    wait_for(lambda: not stack.prom.query(f"ALERTS{selector}"), timeout=timeout, what=f"{alertname}{labels} resolved")


def expect_fault(stack: Stack, fault: str, fired: Mapping[str, float], instance: str | None) -> None:
    """The fault fired exactly the alerts the allow-list gives it, and its other listed queries return data."""
    listed = {key for key, e in EMPTY_WHEN_HEALTHY.items() if e.fault == fault}
    assert {f"alert:{name}" for name in fired} == {k for k in listed if k.startswith("alert:")}
    queries = {e.key: e for e in expressions()}
    at = min(fired.values())
    for key in sorted(listed - {f"alert:{name}" for name in fired}):
        rows = stack.prom.query(queries[key].expr, at=at)
        assert for_instance(rows, instance) if instance else rows, f"{key} returned nothing in fault {fault}"


def ffmpeg_pids(daemon: Daemon, camera: str) -> list[int]:
    pid = daemon.ffmpeg_pid_by_camera().get(camera)
    return [] if pid is None else [pid]


def restarts(daemon: Daemon, camera: str, reason: str) -> float:
    return daemon.value("camera_recorder_ffmpeg_restarts_total", camera=camera, reason=reason) or 0.0


# -- the stack itself --------------------------------------------------------------------------------------


def test_alertmanager_routes_retention_alerts_to_the_recorder_webhook(stack: Stack) -> None:
    disk = stack.instance(stack.disk)
    receivers = stack.am.routes(retention_action="free_space", instance=disk, severity="warning")
    webhook = next(r for r in receivers if r.startswith("recorder-"))
    assert receivers == [webhook, "team"]  # the route continues: people get the alert too
    assert stack.am.routes(instance=disk, severity="warning") == ["team"]


def test_every_rule_is_loaded_and_evaluates_without_error(stack: Stack) -> None:
    def loaded() -> dict[str, dict[str, object]]:
        rules = {r["name"]: r for g in stack.prom.rule_groups() for r in g["rules"]}
        return rules if all(r["health"] == "ok" for r in rules.values()) else {}

    rules = wait_for(loaded, timeout=30, what="every rule evaluated once with health ok")
    assert sorted(rules) == sorted(RULES)
    for name, rule in rules.items():
        assert rule.get("lastError", "") == "", (name, rule.get("lastError"))
        if "alert" in RULES[name]:
            expected = int(FOR_DURATIONS.get(name, "1s").removesuffix("s"))
            assert rule["duration"] == expected, name
            assert rule["labels"] == RULES[name]["labels"], name


def test_every_expression_parses_and_returns_series_on_a_healthy_recorder(stack: Stack) -> None:
    instance = stack.instance(stack.healthy)
    all_expressions = expressions()
    assert not set(EMPTY_WHEN_HEALTHY) - {e.key for e in all_expressions}, "allow-list entries for no expression"
    assert all(e.fault in FAULTS for e in EMPTY_WHEN_HEALTHY.values())
    assert {f"alert:{name}" for name in ALERT_NAMES} <= set(EMPTY_WHEN_HEALTHY), "an alert fires when healthy?"

    def has_data(e: Expression) -> bool:
        rows = for_instance(stack.prom.query(e.expr), instance)  # a parse error raises PromQLError here
        return bool(rows) and (e.label is None or all(e.label in r.labels for r in rows))

    pending = [e for e in all_expressions if e.key not in EMPTY_WHEN_HEALTHY]

    def all_have_data() -> bool:
        pending[:] = [e for e in pending if not has_data(e)]
        return not pending

    try:
        wait_for(all_have_data, timeout=90, what="every query to return series for the healthy recorder")
    except AssertionError:
        pass  # reported below, together with any allow-listed query that is not empty
    unexpected = {
        e.key: rows
        for e in all_expressions
        if e.key in EMPTY_WHEN_HEALTHY and (rows := for_instance(stack.prom.query(e.expr), instance))
    }
    assert not pending, f"empty on the healthy recorder after 90 s: {[(e.key, e.expr) for e in pending]}" + (
        f"; and allow-listed as empty but returned series: {unexpected}" if unexpected else ""
    )
    assert not unexpected, f"allow-listed as empty on a healthy recorder, but returned series: {unexpected}"


def test_unprovoked_alerts_match_real_series_with_the_threshold_relaxed(stack: Stack) -> None:
    instance = stack.instance(stack.healthy)
    relaxed_faults = {k.removeprefix("alert:") for k, e in EMPTY_WHEN_HEALTHY.items() if e.fault == "relaxed"}
    assert relaxed_faults <= set(RELAXED_THRESHOLDS)
    for name, (bundled, relaxed) in RELAXED_THRESHOLDS.items():
        expr = RULES[name]["expr"]
        assert expr.count(bundled) == 1, f"{name}: the threshold {bundled!r} is not in {expr!r}"
        probe = expr.replace(bundled, relaxed)
        if name == "CameraRecorderCpuTooHot" and not HOST_HAS_CPU_SENSOR:
            assert not stack.prom.query(probe), "a CPU temperature without a sensor?"
            continue
        rows = wait_for(
            lambda probe=probe: for_instance(stack.prom.query(probe), instance), timeout=30, what=f"{name}: {probe}"
        )
        assert all(r.labels.get("instance") == instance for r in rows if "instance" in r.labels)


def test_an_empty_fleet_fires_targets_absent(stack: Stack) -> None:
    rows = stack.prom.query(RULES["CameraRecorderTargetsAbsent"]["expr"], at=stack.targets_absent_at)
    assert [r.labels for r in rows] == [{"job": JOB}]
    expect_fault(stack, "no_targets", {"CameraRecorderTargetsAbsent": stack.targets_absent_at}, None)
    wait_resolved(stack, "CameraRecorderTargetsAbsent")


# -- camera faults -----------------------------------------------------------------------------------------


def test_killed_ffmpeg_fires_ffmpeg_restarting_and_recording_gap(stack: Stack) -> None:
    d, since = stack.faults, time.time()
    instance = stack.instance(d)
    before = restarts(d, "crashy", "crashed")
    for n in range(1, 4):
        pid = wait_for(lambda: ffmpeg_pids(d, "crashy"), what="crashy's FFmpeg")[0]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda n=n: restarts(d, "crashy", "crashed") == before + n, what=f"restart {n} counted")
    labels = {"instance": instance, "camera": "crashy"}
    fired = {
        "CameraRecorderFFmpegRestarting": wait_fired(stack, "CameraRecorderFFmpegRestarting", since, **labels),
        "CameraRecorderRecordingGap": wait_fired(stack, "CameraRecorderRecordingGap", since, **labels),
    }
    expect_fault(stack, "ffmpeg_killed", fired, instance)
    rows = stack.prom.query(f"instance_camera:camera_recorder_ffmpeg_restarts:increase15m{prom_labels(**labels)}")
    assert len(rows) == 1 and rows[0].value >= 3
    wait_for(lambda: d.value("camera_recorder_camera_recording", camera="crashy") == 1, what="crashy recording again")


def test_frozen_ffmpeg_fires_camera_stalled(stack: Stack) -> None:
    d, since = stack.faults, time.time()
    instance = stack.instance(d)
    stalls = restarts(d, "frozen", "stall")
    frozen: set[int] = set()

    def freeze_and_check() -> float | None:
        # The camera hangs at every start: each FFmpeg the recorder starts is stopped before its first frame.
        for pid in ffmpeg_pids(d, "frozen"):
            if pid not in frozen:
                os.kill(pid, signal.SIGSTOP)
                frozen.add(pid)
        return first_firing(stack.prom, "CameraRecorderCameraStalled", since, instance=instance, camera="frozen")

    try:
        wait_for(freeze_and_check, timeout=60, what="CameraRecorderCameraStalled for frozen")
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    fired = wait_fired(stack, "CameraRecorderCameraStalled", since, instance=instance, camera="frozen")
    expect_fault(stack, "ffmpeg_frozen", {"CameraRecorderCameraStalled": fired}, instance)
    assert restarts(d, "frozen", "stall") > stalls, "the recorder restarted the frozen FFmpeg on its own"
    wait_for(lambda: d.value("camera_recorder_camera_recording", camera="frozen") == 1, what="frozen recording again")
    wait_resolved(stack, "CameraRecorderCameraStalled", instance=instance, camera="frozen")


def test_removed_clip_fires_camera_not_recording(stack: Stack) -> None:
    d, since = stack.faults, time.time()
    instance = stack.instance(d)
    moved = stack.clip.with_suffix(".moved")
    stack.clip.rename(moved)
    try:
        for pid in ffmpeg_pids(d, "clipcam"):
            os.kill(pid, signal.SIGKILL)
        fired = wait_fired(stack, "CameraRecorderCameraNotRecording", since, instance=instance, camera="clipcam")
        expect_fault(stack, "clip_removed", {"CameraRecorderCameraNotRecording": fired}, instance)
        assert d.value("camera_recorder_camera_recording", camera="clipcam") == 0
        assert d.value("camera_recorder_camera_present", camera="clipcam") == 1  # a file source has no presence
    finally:
        moved.rename(stack.clip)
    wait_for(lambda: d.value("camera_recorder_camera_recording", camera="clipcam") == 1, what="clipcam recording")
    wait_resolved(stack, "CameraRecorderCameraNotRecording", instance=instance, camera="clipcam")


def test_removed_device_fires_camera_absent_which_inhibits_not_recording(stack: Stack) -> None:
    d, since = stack.faults, time.time()
    instance = stack.instance(d)
    # The stand-in node is no V4L2 device: FFmpeg fails on it, so the camera does not record, present or not.
    wait_fired(stack, "CameraRecorderCameraNotRecording", since, instance=instance, camera="devcam")
    stack.device.unlink()
    try:
        fired = wait_fired(stack, "CameraRecorderCameraAbsent", since, instance=instance, camera="devcam")
        expect_fault(stack, "device_removed", {"CameraRecorderCameraAbsent": fired}, instance)
        assert d.value("camera_recorder_camera_present", camera="devcam") == 0
        assert d.value("camera_recorder_camera_state", camera="devcam", state="waiting_for_device") == 1

        def not_recording_inhibited() -> bool:
            alerts = stack.am.alerts(alertname="CameraRecorderCameraNotRecording", instance=instance, camera="devcam")
            return any(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in alerts)

        wait_for(not_recording_inhibited, timeout=30, what="Alertmanager to inhibit NotRecording by CameraAbsent")
    finally:
        stack.device.write_bytes(b"not a V4L2 device")
    wait_for(lambda: d.value("camera_recorder_camera_present", camera="devcam") == 1, what="devcam present again")
    wait_resolved(stack, "CameraRecorderCameraAbsent", instance=instance, camera="devcam")


def test_slow_source_fires_encode_fps_low(stack: Stack) -> None:
    d, since = stack.faults, time.time()
    instance = stack.instance(d)
    fired = wait_fired(stack, "CameraRecorderEncodeFpsLow", since, instance=instance, camera="slowcam")
    expect_fault(stack, "slow_source", {"CameraRecorderEncodeFpsLow": fired}, instance)
    ratio = stack.prom.query(RULES["CameraRecorderEncodeFpsLow"]["expr"], at=fired)
    values = [r.value for r in ratio if r.matches(camera="slowcam")]
    assert len(values) == 1 and 0.3 < values[0] < 0.45, values  # 10 fps of 25 is 0.4


def test_wrong_webhook_token_fires_webhook_rejected(stack: Stack) -> None:
    d, since = stack.faults, time.time()
    instance = stack.instance(d)
    status, _ = d.post("/api/v1/alertmanager", b'{"version": "4", "alerts": []}', {"Authorization": "Bearer wrong"})
    assert status == 401
    fired = wait_fired(stack, "CameraRecorderWebhookRejected", since, instance=instance)
    expect_fault(stack, "webhook_rejected", {"CameraRecorderWebhookRejected": fired}, instance)


# -- storage faults ----------------------------------------------------------------------------------------


def test_disk_above_threshold_makes_alertmanager_call_the_webhook_which_frees_space(stack: Stack) -> None:
    d, since = stack.disk, time.time()
    instance, path = stack.instance(d), str(stack.disk_root)
    cam_dir = stack.disk_root / "diskcam"
    dummies = sorted(p for p in cam_dir.iterdir() if p.name.startswith("diskcam_") and p.stat().st_size == MIB // 2)
    assert len(dummies) == 24
    keep = [cam_dir / "notes.txt", *cam_dir.glob("othercam_*.mkv")]
    accepted = d.value("camera_recorder_alert_webhook_requests_total", result="accepted") or 0
    assert d.value("camera_recorder_retention_deleted_files_total", camera="diskcam", reason="alert") == 0
    assert used_ratio(stack.disk_root) < 0.5

    ballast = stack.disk_root / "ballast.bin"  # not a segment: retention must leave it
    write_file(ballast, 5 * MIB)
    assert used_ratio(stack.disk_root) > 0.5
    labels = {"instance": instance, "path": path}
    fired = {
        name: wait_fired(stack, name, since, **labels)
        for name in (
            "CameraRecorderDiskLowSpace",
            "CameraRecorderDiskFillingUp",
            "CameraRecorderRetentionCapacityTooSmall",
            "CameraRecorderDiskAboveRetentionThreshold",
        )
    }
    expect_fault(stack, "disk_full", fired, instance)

    # Alertmanager -> webhook (with the token) -> a free_space pass.
    wait_for(
        lambda: (d.value("camera_recorder_alert_webhook_requests_total", result="accepted") or 0) > accepted,
        timeout=30,
        what=f"Alertmanager to call the webhook\n{d.log()[-3000:]}",
    )
    deleted = wait_for(
        lambda: d.value("camera_recorder_retention_deleted_files_total", camera="diskcam", reason="alert"),
        timeout=30,
        what="the webhook's pass to delete segments",
    )
    gone = [p for p in dummies if not p.exists()]
    assert gone == dummies[: len(gone)], "not the oldest segments first"
    assert 0 < len(gone) < len(dummies) and deleted == len(gone)
    assert all(p.exists() for p in keep) and ballast.exists()
    # It freed down to below the low-space ratio, and nothing but the alert deleted anything.
    usage = f"instance_path:camera_recorder_filesystem_usage:ratio{prom_labels(**labels)}"
    wait_for(
        lambda: any(r.value < 0.3 for r in stack.prom.query(f"min_over_time({usage}[{window(since)}])")),
        timeout=30,
        what="Prometheus to see the usage below the low-space ratio (30%)",
    )
    assert d.value("camera_recorder_retention_deleted_files_total", camera="diskcam", reason="disk_pressure") == 0
    assert d.value("camera_recorder_retention_runs_total", path=path, trigger="disk_pressure") == 0
    assert (d.value("camera_recorder_retention_runs_total", path=path, trigger="alert") or 0) >= 1
    # Recording was paused above the threshold (stop_recording) and resumes.
    paused = stack.prom.query(
        f"max_over_time(camera_recorder_camera_state{prom_labels(instance=instance, camera='diskcam', state='stopped')}"
        f"[{window(since)}])"
    )
    assert [r.value for r in paused] == [1]
    wait_for(lambda: d.value("camera_recorder_camera_recording", camera="diskcam") == 1, what="diskcam recording")
    wait_resolved(stack, "CameraRecorderDiskAboveRetentionThreshold", **labels)
    wait_resolved(stack, "CameraRecorderDiskFillingUp", **labels)
    wait_for(
        lambda: not stack.am.alerts(alertname="CameraRecorderDiskAboveRetentionThreshold", instance=instance),
        what="Alertmanager to see the alert resolved",
    )


def test_full_filesystem_fires_storage_not_writable(stack: Stack) -> None:
    d, since = stack.disk, time.time()
    instance, path = stack.instance(d), str(stack.disk_root)
    filler = stack.disk_root / "filler.bin"

    def fill_and_check() -> float | None:
        # Keep the filesystem full: the recorder frees a little now and then (a cut-off segment it discards).
        with filler.open("ab", buffering=0) as f:
            for chunk in (MIB, 4096, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        return first_firing(stack.prom, "CameraRecorderStorageNotWritable", since, instance=instance, path=path)

    try:
        wait_for(fill_and_check, timeout=60, what="CameraRecorderStorageNotWritable")
        fired = wait_fired(stack, "CameraRecorderStorageNotWritable", since, instance=instance, path=path)
        expect_fault(stack, "disk_unwritable", {"CameraRecorderStorageNotWritable": fired}, instance)
    finally:
        filler.unlink()
    wait_for(lambda: d.value("camera_recorder_storage_writable", path=path) == 1, what="writable again")
    wait_resolved(stack, "CameraRecorderStorageNotWritable", instance=instance, path=path)


# -- daemon faults -----------------------------------------------------------------------------------------


def test_daemon_down_and_restarts_fire_down_and_daemon_restarting(stack: Stack) -> None:
    since = time.time()
    instance = stack.instance(stack.pinned)
    fired: dict[str, float] = {}
    for n in range(1, 4):
        assert stack.pinned.stop() == 0
        if n == 1:
            fired["CameraRecorderDown"] = wait_fired(stack, "CameraRecorderDown", since, instance=instance, job=JOB)
        stack.pinned = start_pinned(
            write_config(stack.tmp / f"pinned-{n}.yaml", stack.tmp / "pinned-rec", cameras={"pin": TEST_PATTERN}),
            stack.pinned_port,
        )
        started = stack.pinned.value("camera_recorder_start_time_seconds")

        def scraped(started: float | None = started) -> bool:
            rows = stack.prom.query(f"camera_recorder_start_time_seconds{prom_labels(instance=instance)}")
            return [r.value for r in rows] == [started]

        wait_for(scraped, timeout=30, what=f"Prometheus to scrape start {n}")
    fired["CameraRecorderDaemonRestarting"] = wait_fired(
        stack, "CameraRecorderDaemonRestarting", since, instance=instance, job=JOB
    )
    expect_fault(stack, "daemon_restarted", fired, instance)
    changes = stack.prom.query(f"changes(camera_recorder_start_time_seconds{prom_labels(instance=instance)}[1h])")
    assert [r.value for r in changes] == [3]
    wait_resolved(stack, "CameraRecorderDown", instance=instance)

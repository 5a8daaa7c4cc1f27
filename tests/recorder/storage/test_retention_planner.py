"""The retention planner (recorder.storage.retention.planner.plan_pass), with numbers only: no filesystem, no clock."""

from __future__ import annotations

from recorder.config import ThresholdAction
from recorder.storage.retention.model import DiskUsage, Entry
from recorder.storage.retention.planner import IndexView, Policy, RetentionSettings, plan_pass, policies

NOW = 1_000_000.0
MIB = 1 << 20
BLOCK = 4096


def settings(**overrides: object) -> RetentionSettings:
    values: dict[str, object] = {
        "max_age": {"cam1": 1000.0, "cam2": 1000.0},
        "threshold": 0.9,
        "target": 0.8,
        "low_space": 0.5,
        "min_free_minutes": 0.0,
        "on_threshold": ThresholdAction.DELETE_OLDEST,
        "segment_time": 60.0,
    }
    values.update(overrides)
    return RetentionSettings(**values)  # type: ignore[arg-type]


def segments(camera: str, starts: list[float], size: int = MIB) -> list[Entry]:
    return [Entry(start, f"{camera}_{int(start)}.mkv", size, 60.0) for start in starts]


def view(active: frozenset[tuple[str, str]] = frozenset(), **entries: list[Entry]) -> IndexView:
    return IndexView(entries, rate=0.0, active=active, folders_ok=dict.fromkeys(entries, True))


def usage(used_ratio: float, size: int = 100 * MIB) -> DiskUsage:
    return DiskUsage(size, int(size * (1 - used_ratio)), BLOCK)


def test_max_age_picks_every_older_segment_oldest_first_across_cameras() -> None:
    index = view(
        cam1=segments("cam1", [NOW - 3000, NOW - 1500, NOW - 500]),
        cam2=segments("cam2", [NOW - 2000, NOW - 100]),
    )
    plan = plan_pass(index, usage(0.1), NOW, settings(), trigger="schedule", action=None)
    assert [(f.camera, f.start) for f in plan.victims] == [
        ("cam1", NOW - 3000),
        ("cam2", NOW - 2000),
        ("cam1", NOW - 1500),
    ]
    assert {f.reason for f in plan.victims} == {"max_age"}


def test_max_age_spares_files_ffmpeg_has_open_and_cameras_without_a_limit() -> None:
    old = segments("cam1", [NOW - 5000, NOW - 4000])
    index = view(active=frozenset({("cam1", old[0].name)}), cam1=old, cam2=segments("cam2", [NOW - 9000, NOW]))
    limits = settings(max_age={"cam1": 1000.0, "cam2": None})
    plan = plan_pass(index, None, NOW, limits, trigger="schedule", action=None)
    assert [f.name for f in plan.victims] == [old[1].name]


def test_the_newest_segment_within_its_grace_is_never_picked() -> None:
    # 1.5 segment times: a segment started 80 s ago may still be open even when nobody says so.
    index = view(cam1=segments("cam1", [NOW - 200, NOW - 80]))
    plan = plan_pass(index, usage(0.99), NOW, settings(), trigger="disk_pressure", action=None)
    assert [f.start for f in plan.victims] == [NOW - 200]


def test_disk_pressure_frees_down_to_the_target_oldest_first() -> None:
    # 95 % of 100 MiB used, target 80 %: 15 MiB to free, one MiB a segment.
    index = view(cam1=segments("cam1", [NOW - 10_000 + 60 * i for i in range(40)]))
    plan = plan_pass(index, usage(0.95), NOW, settings(max_age={}), trigger="disk_pressure", action=None)
    assert len(plan.victims) == 15
    assert [f.start for f in plan.victims] == sorted(f.start for f in plan.victims)
    assert {f.reason for f in plan.victims} == {"disk_pressure"}
    assert plan.pressure is not None and plan.pressure.bytes_to_free == 15 * MIB


def test_stop_recording_deletes_nothing_for_pressure() -> None:
    index = view(cam1=segments("cam1", [NOW - 10_000 + 60 * i for i in range(40)]))
    on_stop = settings(on_threshold=ThresholdAction.STOP_RECORDING, max_age={})
    plan = plan_pass(index, usage(0.99), NOW, on_stop, trigger="disk_pressure", action=None)
    assert plan.victims == () and plan.pressure is None


def test_an_unreadable_filesystem_skips_the_space_policies_and_says_so() -> None:
    index = view(cam1=segments("cam1", [NOW - 5000, NOW - 4000]))
    plan = plan_pass(index, None, NOW, settings(), trigger="manual", action=None)
    assert plan.unread_policies == (Policy.DISK_PRESSURE,)
    assert len(plan.victims) == 2  # max_age needs no reading


def test_a_manual_pass_counts_what_max_age_picked_as_freed_already() -> None:
    # 85 % used with a 90 % threshold: no pressure; the free_space alert wants below 50 %: 35 MiB and a byte.
    starts = [NOW - 5000 + 60 * i for i in range(60)]
    index = view(cam1=segments("cam1", starts))
    below = settings(max_age={"cam1": 4000.0}, target=0.4)  # the pressure target below the warning
    plan = plan_pass(index, usage(0.85), NOW, below, trigger="alert", action="free_space")
    assert len(plan.victims) == 36 and {f.reason for f in plan.victims} == {"alert"}
    both = plan_pass(index, usage(0.95), NOW, settings(max_age={"cam1": 4000.0}), trigger="manual", action=None)
    aged = [f for f in both.victims if f.reason == "max_age"]
    pressured = [f for f in both.victims if f.reason == "disk_pressure"]
    assert len(aged) == 17 and len(pressured) == 0  # 17 MiB aged out already cover the 15 MiB of pressure


def test_policies_follow_the_trigger_or_the_alert_action() -> None:
    assert policies("schedule", None) == (Policy.MAX_AGE,)
    assert policies("disk_pressure", None) == (Policy.DISK_PRESSURE,)
    assert policies("manual", None) == (Policy.MAX_AGE, Policy.DISK_PRESSURE)
    assert policies("alert", "free_space") == (Policy.FREE_SPACE,)
    assert policies("alert", "enforce_max_age") == (Policy.MAX_AGE,)


def test_a_free_space_alert_never_frees_below_the_pressure_target() -> None:
    # 85 % used; the warning at 50 % lies below the 80 % target: the alert frees 5 %, not 35 %.
    index = view(cam1=segments("cam1", [NOW - 5000 + 60 * i for i in range(60)]))
    plan = plan_pass(index, usage(0.85), NOW, settings(max_age={}), trigger="alert", action="free_space")
    assert settings().alert_floor == 0.8
    assert len(plan.victims) == 6  # just over 5 MiB of 1 MiB segments
    assert settings(target=0.4).alert_floor == 0.5


def test_a_free_space_alert_deletes_nothing_when_the_configuration_keeps_alerts_from_deleting() -> None:
    index = view(cam1=segments("cam1", [NOW - 5000 + 60 * i for i in range(60)]))
    keep = settings(alerts_delete=False, on_threshold=ThresholdAction.STOP_RECORDING)
    assert plan_pass(index, usage(0.99), NOW, keep, trigger="alert", action="free_space").victims == ()
    # The configured max age is the configuration's own rule: on schedule or asked by an alert, it goes on.
    aged = plan_pass(index, usage(0.99), NOW, keep, trigger="alert", action="enforce_max_age").victims
    assert aged and {f.reason for f in aged} == {"max_age"}
    assert plan_pass(index, usage(0.99), NOW, keep, trigger="schedule", action=None).victims == aged

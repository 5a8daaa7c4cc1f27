"""The disk-pressure arithmetic (recorder.storage.retention.planner), with numbers only."""

from __future__ import annotations

import pytest

from recorder.storage.retention.planner import MIN_CHECK_DELAY, bytes_above, next_check_delay, pressure_need

MB = 1_000_000


def need(avail: int, rate: float, *, size: int = 100 * MB, minutes: float = 60.0) -> tuple[int, bool]:
    result = pressure_need(size=size, avail=avail, rate=rate, threshold=0.90, target=0.85, min_free_minutes=minutes)
    return result.bytes_to_free, result.min_free_unmet


def test_below_the_target_nothing_is_deleted_however_large_the_wish() -> None:
    # 60 minutes at 1 MB/s = 3.6 GB wanted on a 100 MB disk: the small-tmpfs case.
    for used_percent in (1, 20, 59, 84):
        assert need(avail=(100 - used_percent) * MB, rate=1 * MB) == (0, True)


def test_a_large_wish_acts_before_the_threshold_but_stops_at_the_target() -> None:
    # 88 % used, below the 90 % threshold: the wish frees down to 85 %, not one byte more.
    assert need(avail=12 * MB, rate=1 * MB) == (3 * MB, True)


def test_above_the_threshold_frees_down_to_the_target() -> None:
    assert need(avail=5 * MB, rate=0.0) == (10 * MB, False)
    assert need(avail=5 * MB, rate=1 * MB, minutes=0) == (10 * MB, False)


def test_a_wish_that_fits_frees_exactly_what_it_asks() -> None:
    # 1 minute at 100 kB/s = 6 MB wanted, 4 MB free (96 % used): the threshold asks for 11 MB anyway.
    assert need(avail=4 * MB, rate=100_000, minutes=1) == (11 * MB, False)
    # Target 50 %: the wish (10 MB) fits in the 50 MB above the target and is met exactly.
    result = pressure_need(
        size=100 * MB, avail=30 * MB, rate=1 * MB, threshold=0.9, target=0.5, min_free_minutes=40 / 60
    )
    assert (result.bytes_to_free, result.min_free_unmet) == (10 * MB, False)


def test_min_free_zero_switches_the_wish_off() -> None:
    assert need(avail=12 * MB, rate=10 * MB, minutes=0) == (0, False)


def test_bytes_above() -> None:
    assert bytes_above(100, 90, 0.85, strict=False) == 5
    assert bytes_above(100, 80, 0.85, strict=False) == 0
    assert bytes_above(100, 85, 0.85, strict=True) == 1


@pytest.mark.parametrize(
    ("avail", "rate", "expected"),
    [
        (50 * MB, 0.0, 60.0),  # nothing written: the configured interval
        (50 * MB, 1 * MB, 10.0),  # 40 MB to the threshold at 1 MB/s: a quarter of the 40 s
        (50 * MB, 0.1 * MB, 60.0),  # 400 s away: the interval is sooner
        (12 * MB, 46e6 / 8, 0.2),  # 2 MB to the threshold at 46 Mbit/s: as often as allowed
        (5 * MB, 1 * MB, MIN_CHECK_DELAY),  # already above
    ],
)
def test_the_next_check_comes_from_the_time_to_full(avail: int, rate: float, expected: float) -> None:
    delay = next_check_delay(size=100 * MB, avail=avail, rate=rate, threshold=0.9, check_interval=60.0)
    assert delay == pytest.approx(expected, rel=0.1)

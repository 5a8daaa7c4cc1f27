"""MIGRATION.md's key table is the legacy parser's own mapping, and says what the parser does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from recorder.app.migration_doc import key_table, replace_table
from recorder.config import legacy

MIGRATION = Path(__file__).resolve().parents[3] / "MIGRATION.md"
ROW_RE = re.compile(r"^\| `([A-Z0-9_<>]+)` \| `([A-Za-z_.<>0-9]+)` \|$", re.MULTILINE)
# A value each key accepts, so that the parser's converters keep it.
SAMPLE_VALUES = {"DEBUG_LOGGING": "1", "WEB_PORT": "8080"}
# The keys the original's users have in their files; copied from ../shared/seed/original-system.md.
ORIGINAL_KEYS = (
    "CAMERA<N>_DEVICE", "CAMERA<N>_NAME", "CAMERA<N>_RESOLUTION", "CAMERA<N>_FRAMERATE", "CAMERA<N>_FORMAT",
    "ENCODING_CODEC", "ENCODING_PRESET", "ENCODING_QUALITY", "LOOKAHEAD_ENABLED", "BITRATE_MODE",
    "TARGET_BITRATE", "MAX_BITRATE", "GOP_SIZE", "REF_FRAMES", "EXTRA_HW_FRAMES", "SEGMENT_TIME",
    "CONTAINER_FORMAT", "FLUSH_PACKETS", "MOVFLAGS", "RECORDINGS_BASE", "CLEANUP_ENABLED", "CLEANUP_DAYS",
    "DISK_USAGE_THRESHOLD", "LOW_SPACE_WARNING", "DISK_MONITORING", "MONITORING_INTERVAL", "INPUT_BUFFER_SIZE",
    "THREAD_COUNT", "WEB_INTERFACE", "WEB_PORT", "ALLOWED_NETWORKS", "CUSTOM_FFMPEG_OPTS", "VAAPI_DRIVER",
    "DEBUG_LOGGING",
)  # fmt: skip


def test_the_generated_table_in_migration_md_is_up_to_date() -> None:
    text = MIGRATION.read_text()
    assert key_table() in text
    assert replace_table(text) == text, "run: python -m recorder.app.migration_doc MIGRATION.md"


@pytest.mark.parametrize(("old", "new"), ROW_RE.findall(MIGRATION.read_text()))
def test_each_row_is_what_the_parser_does(old: str, new: str) -> None:
    key = old.replace("<N>", "1")
    raw, unsupported = legacy.legacy_to_raw(f'{key}="{SAMPLE_VALUES.get(key, "7")}"\n')
    assert unsupported == []
    node = raw
    for part in new.replace("<N>", "1").split("."):
        assert part in node, (old, new, raw)
        node = node[part]


def test_the_table_has_every_key_and_the_ignored_ones_are_reported() -> None:
    text = MIGRATION.read_text()
    rows = ROW_RE.findall(text)
    assert len(rows) == len(legacy.key_mapping())
    for key in ORIGINAL_KEYS:
        assert f"| `{key}` |" in text, key
    for key in legacy.keys_without_equivalent():
        assert f"| `{key}` | no counterpart" in MIGRATION.read_text()
        assert legacy.legacy_to_raw(f'{key}="x"\n')[1] == [key]

"""The original bash `camera-mapping.conf`: read it into a raw mapping (recorder/config/ validates it) and as YAML."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from recorder.input_limits import MAX_SHOWN, MAX_TEXT_LENGTH

_ASSIGNMENT_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_CAMERA_KEY_RE = re.compile(r"^CAMERA(\d+)_([A-Z_]+)$")
_DEFAULT_EXPANSION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")

# Legacy key -> (YAML section or None for top level, YAML key, converter).
_CAMERA_FIELDS: dict[str, str] = {
    "DEVICE": "device",
    "NAME": "name",
    "RESOLUTION": "resolution",
    "FRAMERATE": "framerate",
    "FORMAT": "input_format",
    "ENABLED": "enabled",
}


def _int(value: str) -> int | str:
    return int(value) if value.strip().isdigit() else value


def _flag(value: str) -> bool | str:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    return value


def _number(value: str) -> float | int | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def _log_level(value: str) -> str:
    return "DEBUG" if _flag(value) is True else "INFO"


_GLOBAL_FIELDS: dict[str, tuple[str | None, str, Any]] = {
    "ENCODING_CODEC": ("encoding", "codec", str),
    "ENCODING_PRESET": ("encoding", "preset", str),
    "ENCODING_QUALITY": ("encoding", "quality", _int),
    "LOOKAHEAD_ENABLED": ("encoding", "lookahead", _flag),
    "BITRATE_MODE": ("encoding", "bitrate_mode", str),
    "TARGET_BITRATE": ("encoding", "target_bitrate", _int),
    "MAX_BITRATE": ("encoding", "max_bitrate", _int),
    "GOP_SIZE": ("encoding", "gop_size", _int),
    "REF_FRAMES": ("encoding", "ref_frames", _int),
    "EXTRA_HW_FRAMES": ("encoding", "extra_hw_frames", _int),
    "SEGMENT_TIME": ("recording", "segment_time", _int),
    "CONTAINER_FORMAT": ("recording", "container_format", str),
    "FLUSH_PACKETS": ("recording", "flush_packets", _flag),
    "MOVFLAGS": ("recording", "movflags", str),
    "RECORDINGS_BASE": ("recording", "base_directory", str),
    "CLEANUP_ENABLED": ("storage", "cleanup_enabled", _flag),
    "CLEANUP_DAYS": ("storage", "cleanup_days", _number),
    "DISK_USAGE_THRESHOLD": ("storage", "disk_usage_threshold", _number),
    "LOW_SPACE_WARNING": ("storage", "low_space_warning", _number),
    "MONITORING_INTERVAL": ("storage", "check_interval", _number),
    "VAAPI_DRIVER": (None, "vaapi_driver", str),
    "DEBUG_LOGGING": (None, "log_level", _log_level),
    "WEB_PORT": (None, "web_port", _int),
}

# Keys the original used that have no counterpart here: reported, never silently dropped.
_NO_EQUIVALENT = (
    "INPUT_BUFFER_SIZE", "THREAD_COUNT", "WEB_INTERFACE", "ALLOWED_NETWORKS", "CUSTOM_FFMPEG_OPTS",
    "DISK_MONITORING",
)  # fmt: skip


def looks_legacy(path: Path, text: str) -> bool:
    """A bash config is KEY=value lines; YAML never has `=` right after a bare upper-case key."""
    if path.suffix in (".yaml", ".yml"):
        return False
    if path.suffix == ".conf":
        return True
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return bool(lines) and all(_ASSIGNMENT_RE.match(ln) for ln in lines)


def parse_assignments(text: str) -> dict[str, str]:
    """Evaluate the KEY="value" lines the way bash would for the shapes these files use."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ASSIGNMENT_RE.match(line)
        if not match:
            if line.strip() and not line.lstrip().startswith("#"):
                raise ValueError(f"line {number}: not a KEY=value assignment: {_clip(line.strip())}")
            continue
        key, rest = match.groups()
        try:
            words = shlex.split(rest, comments=True, posix=True)
        except ValueError as exc:
            raise ValueError(f"line {number}: {key}: {exc}") from None
        raw = words[0] if words else ""
        # Bash expands nothing inside single quotes.
        try:
            value = raw if rest.lstrip().startswith("'") else _expand(raw, values)
        except _TooLong:
            value = None
        # `B=$A$A`, `C=$B$B`, ... doubles at each line: forty lines would make a terabyte.
        if value is None or len(value) > MAX_TEXT_LENGTH:
            raise ValueError(f"line {number}: {key}: longer than {MAX_TEXT_LENGTH} characters (after expansion)")
        values[key] = value
    return values


def _clip(text: str) -> str:
    """A line quoted in an error message: at most MAX_SHOWN characters of it."""
    if len(text) <= MAX_SHOWN:
        return repr(text)
    quoted = repr(text[:MAX_SHOWN])
    return f"{quoted[:-1]}...{quoted[-1]} ({len(text)} characters)"


def _expand(value: str, known: dict[str, str]) -> str:
    produced = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal produced
        name = match[1] or match[3]
        default = match[2] if match[2] is not None else ""
        result = known.get(name) or default
        # Stopped as soon as it is too long: a line of a million `$A` must not build gigabytes first.
        produced += len(result)
        if produced > MAX_TEXT_LENGTH:
            raise _TooLong
        return result

    return _DEFAULT_EXPANSION_RE.sub(replace, value)


class _TooLong(Exception):
    """An expansion past MAX_TEXT_LENGTH."""


def legacy_to_raw(text: str, source: str = "camera-mapping.conf") -> tuple[dict[str, Any], list[str]]:
    """The raw YAML-shaped mapping of a legacy file, and the keys that have no equivalent."""
    from recorder.config import ConfigError

    try:
        values = parse_assignments(text)
    except ValueError as exc:
        raise ConfigError([str(exc)], source) from None
    raw: dict[str, Any] = {}
    cameras: dict[str, dict[str, Any]] = {}
    unsupported: list[str] = []
    for key, value in values.items():
        cam = _CAMERA_KEY_RE.match(key)
        if cam and cam[2] in _CAMERA_FIELDS:
            field = _CAMERA_FIELDS[cam[2]]
            converted: Any = value
            if field == "framerate":
                converted = _int(value)
            elif field == "input_format":
                converted = value.lower()
            elif field == "enabled":
                converted = _flag(value)
            cameras.setdefault(f"cam{int(cam[1])}", {})[field] = converted
        elif key in _GLOBAL_FIELDS:
            section, name, convert = _GLOBAL_FIELDS[key]
            target = raw if section is None else raw.setdefault(section, {})
            target[name] = convert(value)
        else:
            unsupported.append(key)
    if cameras:
        raw["cameras"] = dict(sorted(cameras.items(), key=lambda kv: int(kv[0][3:])))
    return raw, unsupported


def raw_to_yaml(raw: dict[str, Any]) -> str:
    """YAML text of a raw mapping, sections in the order of config.yaml.example."""
    order = ["cameras", "encoding", "recording", "storage", "vaapi_driver", "log_level", "web_port"]
    ordered = {k: raw[k] for k in order if k in raw} | {k: v for k, v in raw.items() if k not in order}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)


def key_mapping() -> list[tuple[str, str]]:
    """(legacy key, YAML key) for every key the legacy parser reads, in its own tables' order; MIGRATION.md's
    table is generated from this, so it cannot drift from what the parser does."""
    rows = [(f"CAMERA<N>_{key}", f"cameras.cam<N>.{field}") for key, field in _CAMERA_FIELDS.items()]
    for key, (section, name, _) in _GLOBAL_FIELDS.items():
        rows.append((key, name if section is None else f"{section}.{name}"))
    return rows


def keys_without_equivalent() -> tuple[str, ...]:
    """Keys of the original with no counterpart: reported by the parser, listed in MIGRATION.md."""
    return _NO_EQUIVALENT

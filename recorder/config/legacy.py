"""The original bash `camera-mapping.conf`: read it into a raw mapping (recorder/config/ validates it) and as YAML.

As strict as YAML: a key that looks like one of the original's (CAMERA<N>_..., or a known prefix such as
ENCODING_) but is not one is an error with a did-you-mean, and every message names the legacy key and its
line, never the YAML key it became.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recorder.config.limits import MAX_SHOWN, MAX_TEXT_LENGTH
from recorder.config.model import ConfigError

_ASSIGNMENT_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_CAMERA_KEY_RE = re.compile(r"^CAMERA(\d+)_([A-Z_]+)$")
_CAMERA_NUMBER_RE = re.compile(r"^CAMERA_?(\d+)")
_DEFAULT_EXPANSION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# A kernel-numbered node: its number follows plug order, so a replug can swap two cameras.
_KERNEL_NODE_RE = re.compile(r"^video\d+$")

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
}

_WEB_GONE = "the web interface is gone; the status page is served on exporter.listen_address (default 0.0.0.0:9100)"
# Keys the original used that have no counterpart here: reported with their line, never silently dropped.
_NO_EQUIVALENT: dict[str, str] = {
    "INPUT_BUFFER_SIZE": "no equivalent in camera-recorder",
    "THREAD_COUNT": "no equivalent in camera-recorder",
    "WEB_INTERFACE": _WEB_GONE,
    "WEB_PORT": _WEB_GONE,
    "ALLOWED_NETWORKS": (
        "no equivalent in camera-recorder (limit access with a firewall, or basic auth in --web.config.file)"
    ),
    "CUSTOM_FFMPEG_OPTS": "no equivalent in camera-recorder",
    "DISK_MONITORING": "no equivalent in camera-recorder (the disk is always watched)",
}

_KNOWN_KEYS = (*_GLOBAL_FIELDS, *_NO_EQUIVALENT)
# A key starting like one of the original's is a typo of it, not a helper variable of the operator's own.
_KNOWN_PREFIXES = frozenset({"CAMERA", *(key.split("_", 1)[0] for key in _KNOWN_KEYS)})
# (YAML leaf name, section) -> legacy key: messages about one key often name a sibling (max >= target).
_LEGACY_NAME: dict[tuple[str | None, str], str] = {
    (section, name): key for key, (section, name, _) in _GLOBAL_FIELDS.items()
}


@dataclass(frozen=True)
class Assignment:
    """One KEY=value line of the file, as bash evaluates it."""

    key: str
    value: str
    line: int


@dataclass
class LegacyFile:
    """A camera-mapping.conf read: its raw YAML-shaped mapping and where each value came from."""

    raw: dict[str, Any]
    # YAML key path (cameras.cam1.framerate) -> the assignment that set it.
    origins: dict[str, Assignment] = field(default_factory=dict)
    # Unknown keys that look like the original's: errors, one line each.
    problems: list[str] = field(default_factory=list)
    # Keys read but without meaning here: warnings, one line each.
    notes: list[str] = field(default_factory=list)
    # The keys behind `notes`, in file order.
    ignored: list[str] = field(default_factory=list)
    assignments: dict[str, Assignment] = field(default_factory=dict)

    def explain(self, problem: str) -> str:
        """A problem or warning parse_config wrote about a YAML key path, said in the legacy file's terms."""
        path, _, message = problem.partition(": ")
        section = path.split(".")[0] if "." in path and not path.startswith("cameras.") else None
        message = self._legacy_words(section, message)
        origin = self.origins.get(path)
        if origin is not None:
            return f"line {origin.line}: {origin.key}: {message}"
        camera = re.fullmatch(r"cameras\.cam(\d+)(?:\.source)?", path)
        if camera and "required" in message:
            n = camera[1]
            given = sorted((a for a in self.assignments.values() if _camera_number(a.key) == n), key=lambda a: a.line)
            where = f"line {given[0].line}: " if given else ""
            names = ", ".join(a.key for a in given) or "nothing"
            return f"{where}CAMERA{n}_DEVICE: missing: camera {n} has {names} but no CAMERA{n}_DEVICE"
        same = re.fullmatch(r"((?:cam\d+)(?: and cam\d+)+) record the same source (.*)", message)
        if path == "cameras" and same:
            keys = [self.origins.get(f"cameras.{cam}.device") for cam in same[1].split(" and ")]
            found = [a for a in keys if a is not None]
            return f"{_lines(found)}: {' and '.join(a.key for a in found)} name the same device {same[2]}"
        if path == "cameras" and "disabled" in message:
            enabled = sorted((a for a in self.assignments.values() if a.key.endswith("_ENABLED")), key=lambda a: a.line)
            return f"{_lines(enabled)}: {', '.join(a.key for a in enabled)}: {message}"
        if path == "cameras" and "expected a mapping" in message:
            return "no CAMERA<N>_DEVICE line: the file names no camera (CAMERA1_DEVICE=/dev/v4l/by-id/...)"
        # A key the file does not set, in trouble because of one it does (pressure_target below the threshold).
        named = [a for key, a in self.assignments.items() if re.search(rf"\b{key}\b", message)]
        where = f"line {named[0].line}: " if named else ""
        return f"{where}{path}: {message}"

    def _legacy_words(self, section: str | None, message: str) -> str:
        """`message` with the YAML names of sibling keys the file sets replaced by their legacy names."""
        for (key_section, name), legacy_key in _LEGACY_NAME.items():
            if key_section == section and section is not None and legacy_key in self.assignments:
                message = re.sub(rf"\b{name}\b", legacy_key, message)
        return message


def _lines(assignments: list[Assignment]) -> str:
    numbers = [str(a.line) for a in assignments]
    return f"line {numbers[0]}" if len(numbers) == 1 else f"lines {', '.join(numbers)}"


def _camera_number(key: str) -> str | None:
    match = _CAMERA_KEY_RE.match(key)
    return str(int(match[1])) if match else None


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
    return {key: a.value for key, a in read_assignments(text)[0].items()}


def read_assignments(text: str) -> tuple[dict[str, Assignment], set[str]]:
    """Each key's last assignment (bash's value for it, with its line), and the names other lines expand."""
    values: dict[str, Assignment] = {}
    referenced: set[str] = set()
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
            value = raw if rest.lstrip().startswith("'") else _expand(raw, values, referenced, key)
        except _TooLong:
            value = None
        # `B=$A$A`, `C=$B$B`, ... doubles at each line: forty lines would make a terabyte.
        if value is None or len(value) > MAX_TEXT_LENGTH:
            raise ValueError(f"line {number}: {key}: longer than {MAX_TEXT_LENGTH} characters (after expansion)")
        values.pop(key, None)  # file order is the order of the last assignments
        values[key] = Assignment(key, value, number)
    return values, referenced


def _clip(text: str) -> str:
    """A line quoted in an error message: at most MAX_SHOWN characters of it."""
    if len(text) <= MAX_SHOWN:
        return repr(text)
    quoted = repr(text[:MAX_SHOWN])
    return f"{quoted[:-1]}...{quoted[-1]} ({len(text)} characters)"


def _expand(value: str, known: dict[str, Assignment], referenced: set[str], key: str) -> str:
    produced = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal produced
        name = match[1] or match[3]
        if name != key:  # `X="${X:-default}"` is a default, not a use by another line
            referenced.add(name)
        default = match[2] if match[2] is not None else ""
        earlier = known.get(name)
        result = (earlier.value if earlier is not None else "") or default
        # Stopped as soon as it is too long: a line of a million `$A` must not build gigabytes first.
        produced += len(result)
        if produced > MAX_TEXT_LENGTH:
            raise _TooLong
        return result

    return _DEFAULT_EXPANSION_RE.sub(replace, value)


class _TooLong(Exception):
    """An expansion past MAX_TEXT_LENGTH."""


def _unknown_key(key: str) -> str | None:
    """Why `key` is refused (a typo of one of the original's keys), or None for an operator's own variable."""
    camera = _CAMERA_NUMBER_RE.match(key)
    if key.startswith("CAMERA"):
        n = int(camera[1]) if camera else 1
        options = [f"CAMERA{n}_{name}" for name in _CAMERA_FIELDS]
        rest = key[len(camera[0]) if camera else len("CAMERA") :].lstrip("_")
        hint = difflib.get_close_matches(rest, _CAMERA_FIELDS, n=1, cutoff=0.75)
        if hint:
            return f"unknown key (did you mean 'CAMERA{n}_{hint[0]}'?)"
        return f"unknown key; a camera's keys are {', '.join(options)}"
    hint = difflib.get_close_matches(key, _KNOWN_KEYS, n=1, cutoff=0.8)
    if hint:
        return f"unknown key (did you mean '{hint[0]}'?)"
    prefix = key.split("_", 1)[0]
    if prefix in _KNOWN_PREFIXES:
        siblings = [k for k in _KNOWN_KEYS if k.split("_", 1)[0] == prefix]
        return f"unknown key; the {prefix}_ keys are {', '.join(siblings)}"
    return None


def read_legacy(text: str, source: str = "camera-mapping.conf") -> LegacyFile:
    """Read a legacy file into its raw mapping, with the origin of every value and what was refused or ignored."""

    try:
        values, referenced = read_assignments(text)
    except ValueError as exc:
        raise ConfigError([str(exc)], source) from None
    result = LegacyFile(raw={}, assignments=values)
    cameras: dict[str, dict[str, Any]] = {}
    for key, assignment in values.items():
        value = assignment.value
        cam = _CAMERA_KEY_RE.match(key)
        if cam and cam[2] in _CAMERA_FIELDS:
            if value == "":
                continue  # bash's `[ -n "$X" ]`: an empty value is an unset one
            name = _CAMERA_FIELDS[cam[2]]
            converted: Any = value
            if name == "framerate":
                converted = _int(value)
            elif name == "input_format":
                converted = value.lower()
            elif name == "enabled":
                converted = _flag(value)
            camera_id = f"cam{int(cam[1])}"
            cameras.setdefault(camera_id, {})[name] = converted
            result.origins[f"cameras.{camera_id}.{name}"] = assignment
        elif key in _GLOBAL_FIELDS:
            if value == "":
                continue
            section, name, convert = _GLOBAL_FIELDS[key]
            target = result.raw if section is None else result.raw.setdefault(section, {})
            target[name] = convert(value)
            result.origins[name if section is None else f"{section}.{name}"] = assignment
        elif key in _NO_EQUIVALENT:
            result.ignored.append(key)
            result.notes.append(f"line {assignment.line}: {key}: {_NO_EQUIVALENT[key]}; ignored")
        elif key in referenced:
            continue  # a helper variable other lines expand (BASE=/storage): bash's business, not ours
        elif (why := _unknown_key(key)) is not None:
            result.problems.append(f"line {assignment.line}: {key}: {why}")
        else:
            # An operator's own variable that nothing uses: said, in case it was meant for the recorder.
            result.ignored.append(key)
            result.notes.append(f"line {assignment.line}: {key}: not a camera-recorder key; ignored")
    if cameras:
        result.raw["cameras"] = dict(sorted(cameras.items(), key=lambda kv: int(kv[0][3:])))
    return result


def legacy_to_raw(text: str, source: str = "camera-mapping.conf") -> tuple[dict[str, Any], list[str]]:
    """The raw YAML-shaped mapping of a legacy file, and the keys that have no equivalent (ignored).

    ConfigError when the file has a key that looks like one of the original's but is not (a typo).
    """

    read = read_legacy(text, source)
    if read.problems:
        raise ConfigError(read.problems, source)
    return read.raw, read.ignored


def raw_to_yaml(raw: dict[str, Any]) -> str:
    """YAML text of a raw mapping, sections in the order of config.yaml.example."""
    order = ["cameras", "encoding", "recording", "storage", "vaapi_driver", "log_level", "web_port"]
    ordered = {k: raw[k] for k in order if k in raw} | {k: v for k, v in raw.items() if k not in order}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False)


def stable_device_proposals(
    read: LegacyFile, stable_link: Callable[[str], str | None]
) -> list[tuple[str, Assignment, str | None]]:
    """(camera id, its DEVICE assignment, the /dev/v4l/by-id link to use instead or None) for each camera
    named by a kernel number (/dev/videoN), which follows plug order and can swap cameras at a replug.
    stable_link (the devices layer's, passed in by the app) names the link of a node, or None."""
    proposals: list[tuple[str, Assignment, str | None]] = []
    for camera_id, camera in read.raw.get("cameras", {}).items():
        device = camera.get("device")
        if not isinstance(device, str) or not _KERNEL_NODE_RE.match(os.path.basename(device)):
            continue
        proposals.append((camera_id, read.origins[f"cameras.{camera_id}.device"], stable_link(device)))
    return proposals


def key_mapping() -> list[tuple[str, str]]:
    """(legacy key, YAML key) for every key the legacy parser reads, in its own tables' order; MIGRATION.md's
    table is generated from this, so it cannot drift from what the parser does."""
    rows = [(f"CAMERA<N>_{key}", f"cameras.cam<N>.{name}") for key, name in _CAMERA_FIELDS.items()]
    for key, (section, name, _) in _GLOBAL_FIELDS.items():
        rows.append((key, name if section is None else f"{section}.{name}"))
    return rows


def keys_without_equivalent() -> tuple[str, ...]:
    """Keys of the original with no counterpart: reported by the parser, listed in MIGRATION.md."""
    return tuple(_NO_EQUIVALENT)

"""Reading a config file: bytes, UTF-8, the YAML loader (alias bound, duplicate keys) or the legacy format."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from recorder.config import legacy
from recorder.config.fields import show_key
from recorder.config.legacy import LegacyFile
from recorder.config.limits import MAX_CONFIG_BYTES, MAX_SHOWN, MAX_YAML_VALUES
from recorder.config.model import Config, ConfigError
from recorder.config.sections import parse_config

DEFAULT_CONFIG_PATH = Path("/etc/camera-recorder/config.yaml")
CONFIG_ENV = "CAMERA_RECORDER_CONFIG"


def resolve_config_path(cli_path: str | None) -> Path:
    """The -c flag wins, then $CAMERA_RECORDER_CONFIG, then /etc/camera-recorder/config.yaml."""
    if cli_path:
        return Path(cli_path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG_PATH


class _RefusedYaml(yaml.MarkedYAMLError):
    """Well-formed YAML the config reader refuses: duplicate keys, aliases that expand too far."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_VALUES values, or that contains itself.

    Each distinct node is visited once (sizes memoized), so an alias bomb is refused in microseconds,
    without ever building, walking or printing its expansion.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()  # nodes whose children are being sized: the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in _children(node))
            if size[id(node)] > MAX_YAML_VALUES:
                raise _RefusedYaml(
                    None, None,
                    f"anchors and aliases expand to more than {MAX_YAML_VALUES} values; refused (an alias bomb?)",
                    node.start_mark,
                )  # fmt: skip
            continue
        if id(node) in size:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _RefusedYaml(None, None, "an alias refers to a value that contains it; refused", child.start_mark)
            if id(child) not in size:
                stack.append((child, False))


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus what turns a config into a trap: duplicate keys and alias bombs."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Before SafeConstructor merges `<<:` keys in: a merged key may be overridden, a repeated one may not.
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_line.get(key)
                except TypeError:
                    continue  # unhashable: SafeConstructor reports it
                line = key_node.start_mark.line + 1
                if earlier is not None:
                    raise _RefusedYaml(
                        None, None, f"duplicate key {show_key(key)!r} (first defined on line {earlier})",
                        key_node.start_mark,
                    )  # fmt: skip
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_config_bytes(path: Path) -> bytes:
    """The file's bytes; ConfigError naming the reason when it cannot be read as a config file."""

    def refuse(reason: str) -> ConfigError:
        return ConfigError([f"cannot read config: {reason}"], str(path))

    try:
        # Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise refuse(os.strerror(errno.EISDIR))
        if not stat.S_ISREG(mode):
            raise refuse("not a regular file (a device, FIFO or socket)")
        chunks, total = [], 0
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_CONFIG_BYTES:
                raise refuse(f"larger than {MAX_CONFIG_BYTES} bytes; a config is a few kB")
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _decode_config(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"], str(path)
        ) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ConfigError([f"line {line}: a NUL byte: this is a binary file, not a config"], str(path))
    return text.removeprefix("\ufeff")  # a byte-order mark some editors write


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def load_raw(path: Path) -> Any:
    """The raw mapping of a YAML or legacy bash config file and its notes, or ConfigError if it cannot be read.

    Every failure is one line naming the file: unreadable, not a regular file, too big, not UTF-8, binary,
    invalid YAML, a duplicate key, aliases expanding too far, nesting too deep, a mistyped legacy key.
    """
    raw, notes, read = read_source(path)
    if read is not None:
        parse_legacy(read, source=str(path), base_dir=path.parent)  # every problem at once, named as in the file
    return raw, notes


def read_source(path: Path) -> tuple[Any, list[str], LegacyFile | None]:
    """The raw mapping, its notes, and for a legacy file what it was read from (to name legacy keys)."""
    text = _decode_config(path, _read_config_bytes(path))
    if legacy.looks_legacy(path, text):
        read = legacy.read_legacy(text, source=str(path))
        return read.raw, read.notes, read
    try:
        return yaml.load(text, Loader=_ConfigLoader), [], None  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        kind = "" if isinstance(exc, _RefusedYaml) else "invalid YAML: "
        raise ConfigError([f"{where}{kind}{_clip(problem)}"], str(path)) from None
    except RecursionError:
        raise ConfigError(["invalid YAML: nested too deeply"], str(path)) from None
    except ValueError as exc:
        # A value YAML's own constructors refuse: a date such as 2024-13-45, an integer of 5000 digits
        # (whose wording changes between Python versions, so it gets ours).
        problem = str(exc)
        if "integer string conversion" in problem:
            problem = "an integer with too many digits"
        raise ConfigError([f"invalid YAML: a value cannot be read: {_clip(problem)}"], str(path)) from None


def _line_of(problem: str) -> float:
    match = re.match(r"lines? (\d+)", problem)
    return int(match[1]) if match else float("inf")


def parse_legacy(read: LegacyFile, source: str | None = None, base_dir: Path | None = None) -> Config:
    """Validate a legacy file's mapping; every problem and warning names the legacy key and its line."""
    problems = list(read.problems)
    config: Config | None = None
    try:
        config = parse_config(read.raw, source=source, base_dir=base_dir)
    except ConfigError as exc:
        problems += [read.explain(p) for p in exc.problems]
    if problems or config is None:
        raise ConfigError(sorted(problems, key=_line_of), source)
    warnings = sorted([*read.notes, *(read.explain(w) for w in config.warnings)], key=_line_of)
    return dataclasses.replace(config, warnings=tuple(warnings))


def load_config(path: Path) -> Config:
    """Read, validate and return the configuration at `path` (YAML or legacy camera-mapping.conf)."""
    raw, notes, read = read_source(path)
    if read is not None:
        return parse_legacy(read, source=str(path), base_dir=path.parent)
    config = parse_config(raw, source=str(path), base_dir=path.parent)
    if notes:
        config = Config(**{**config.__dict__, "warnings": (*notes, *config.warnings)})
    return config

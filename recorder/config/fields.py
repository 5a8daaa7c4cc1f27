"""Validation machinery: the `_Section` reader, value converters and `_show`, shared by the section parsers."""

from __future__ import annotations

import difflib
import math
import re
import reprlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from recorder.config.limits import MAX_NAME_LENGTH, MAX_SHOWN, MAX_TEXT_LENGTH
from recorder.config.model import Resolution

# Camera ids become folder and file names, so only a conservative character set is accepted.
CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
RESOLUTION_RE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt", "tcp")


# Validation machinery: a reader walks one mapping, records every problem and never raises midway,
# so the operator sees all mistakes of a file at once.

T = TypeVar("T")
_MISSING: Any = object()


_bounded_repr = reprlib.Repr()
_bounded_repr.maxlevel = 2
_bounded_repr.maxstring = _bounded_repr.maxother = _bounded_repr.maxlong = MAX_SHOWN


def _show(value: Any) -> str:
    """A value as an error message quotes it: strings quoted, booleans as YAML writes them, never long."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        if len(value) <= MAX_SHOWN:
            return repr(value)
        quoted = repr(value[:MAX_SHOWN])
        return f"{quoted[:-1]}...{quoted[-1]} ({len(value)} characters)"
    if isinstance(value, int) and value.bit_length() > MAX_SHOWN * 3:  # roughly more than MAX_SHOWN digits
        try:
            digits = len(str(abs(value)))
        except ValueError:  # past Python's 4300-digit limit of str()
            digits = int(value.bit_length() * math.log10(2)) + 1
        return f"a number of {digits} digits"
    if isinstance(value, int | float) or value is None:
        return repr(value)
    # reprlib walks a bounded part of a container however big (or self-referencing) it is.
    text = _bounded_repr.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def show_key(key: Any) -> str:
    """A mapping key as it appears in a key path (cameras.cam1.name), cut short when absurd."""
    text = key if isinstance(key, str) else _show(key)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}... ({len(text)} characters)"


class _TooLong(ValueError):
    """A free string over its length limit: reported as such, not as a wrong type."""

    def __init__(self, value: str, limit: int) -> None:
        super().__init__(value)
        self.limit = limit


class _Section:
    def __init__(self, raw: Any, path: str, problems: list[str], allowed: tuple[str, ...]) -> None:
        self.path = path
        self.problems = problems
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            problems.append(f"{path or 'top level'}: expected a mapping, got {_show(raw)}")
            raw = {}
        self.raw: Mapping[str, Any] = raw
        for key in raw:
            if key not in allowed:
                shown = show_key(key)
                hint = difflib.get_close_matches(shown, allowed, n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                problems.append(f"{self._key(shown)}: unknown key{suffix}")

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.raw and self.raw[key] is not None

    def get(self, key: str, convert: Callable[[Any], T], default: T, expected: str) -> T:
        if not self.has(key):
            return default
        value = self.raw[key]
        try:
            return convert(value)
        except _TooLong as exc:
            self.problems.append(f"{self._key(key)}: expected at most {exc.limit} characters, got {_show(value)}")
            return default
        except (TypeError, ValueError):
            self.problems.append(f"{self._key(key)}: expected {expected}, got {_show(value)}")
            return default

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self._key(key)}: {message}")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise ValueError(value)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise ValueError(value)
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(value)
    return value


def _finite_number(value: Any, *, zero_allowed: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    number = float(value)
    # `not number > 0` rather than `number <= 0`: NaN fails every comparison and must be refused too.
    if not (number >= 0 if zero_allowed else number > 0) or number == float("inf"):
        raise ValueError(value)
    return number


def _non_negative_number(value: Any) -> float:
    return _finite_number(value, zero_allowed=True)


def _positive_number(value: Any) -> float:
    return _finite_number(value, zero_allowed=False)


def _percent(value: Any) -> float:
    if isinstance(value, str):
        value = value.strip().rstrip("%")
    number = _positive_number(value)
    if number > 100:
        raise ValueError(value)
    return number


def _text(value: Any, limit: int = MAX_TEXT_LENGTH) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(value)
    text = str(value).strip()  # ValueError past Python's 4300-digit limit for integers
    if text == "":
        raise ValueError(value)
    if len(text) > limit:
        raise _TooLong(text, limit)
    return text


def _name(value: Any) -> str:
    """A display name: it becomes a label value on every scrape, so it stays short."""
    return _text(value, MAX_NAME_LENGTH)


def _choice(options: tuple[str, ...], *, fold: Callable[[str], str] = str.lower) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _text(value)
        for option in options:
            if fold(option) == fold(text):
                return option
        raise ValueError(value)

    return convert


def _resolution(value: Any) -> Resolution:
    match = RESOLUTION_RE.match(str(value)) if isinstance(value, str) else None
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise ValueError(value)
    return Resolution(int(match[1]), int(match[2]))


def _one_of(options: tuple[str, ...]) -> str:
    return "one of " + ", ".join(options)

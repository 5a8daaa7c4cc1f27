"""Log line formats: the human one (default) and the Prometheus ecosystem's `logfmt` and `json`.

`--log.format logfmt|json` gives what Prometheus and node_exporter write (`ts=... level=info msg=...`), for
log shippers such as Promtail or Vector; the human format stays the default on a terminal and under journald.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime

from recorder.domain.compat import UTC

HUMAN, LOGFMT, JSON = "human", "logfmt", "json"
LOG_FORMATS = (LOGFMT, JSON)  # what --log.format takes; without it, the human format
HUMAN_FIELDS = "%(levelname)s [%(camera)s] %(name)s: %(message)s"
# go-kit's level names, as Prometheus prints them.
_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "error"}
_NEEDS_QUOTES = re.compile(r'[\s="\\]')


class CameraField(logging.Filter):
    """Every record gets a camera field, '-' when it is not about one camera."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "camera"):
            record.camera = "-"
        return True


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds, as Prometheus writes `ts=`."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, str]:
    fields = {"ts": _timestamp(record), "level": _LEVELS.get(record.levelname, record.levelname.lower())}
    camera = getattr(record, "camera", "-")
    if camera != "-":
        fields["camera"] = str(camera)
    fields["logger"] = record.name
    fields["msg"] = record.getMessage()
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    return fields


def _logfmt_value(value: str) -> str:
    if value and not _NEEDS_QUOTES.search(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record, self).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record, self), ensure_ascii=False)


def formatter_for(log_format: str | None, *, under_journald: bool) -> logging.Formatter:
    """The formatter for `--log.format` (None: the human format, without a timestamp under journald)."""
    if log_format == LOGFMT:
        return LogfmtFormatter()
    if log_format == JSON:
        return JsonFormatter()
    # journald stamps every line itself; a second timestamp only makes lines longer.
    return logging.Formatter(HUMAN_FIELDS if under_journald else "%(asctime)s " + HUMAN_FIELDS)

"""Alertmanager's webhook (payload version 4): alerts that carry `retention_action` free space here."""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import IO, Any, Protocol

from recorder.config import ExporterConfig

log = logging.getLogger(__name__)

RETENTION_ACTIONS = ("free_space", "enforce_max_age")
# How long the webhook waits for the pass before answering 202; Alertmanager's own timeout is 10 s.
PASS_WAIT_SECONDS = 5.0
# An oversized body is read and dropped up to this much; beyond it the connection is simply closed.
DISCARD_LIMIT = 16 << 20


class RetentionRunner(Protocol):
    def request(self, action: str, trigger: str = "alert", timeout: float = 30.0) -> Any: ...


@dataclass(frozen=True)
class WebhookResult:
    status: HTTPStatus
    result: str  # one of exporter.metrics.WEBHOOK_RESULTS
    body: Mapping[str, Any] = field(default_factory=dict)


class _Invalid(Exception):
    pass


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _Invalid(f"{where}: expected an object of strings")
    return value


def parse_payload(body: bytes) -> list[tuple[str, dict[str, str]]]:
    """(status, labels) of every alert in a version 4 payload; _Invalid names what is wrong."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Invalid(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise _Invalid("body: expected a JSON object")
    if payload.get("version") != "4":
        raise _Invalid(f'version: expected "4", got {payload.get("version")!r}')
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise _Invalid("alerts: expected a list")
    parsed = []
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise _Invalid(f"alerts[{index}]: expected an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise _Invalid(f"alerts[{index}].status: expected firing or resolved, got {status!r}")
        parsed.append((status, _str_map(alert.get("labels"), f"alerts[{index}].labels")))
    return parsed


def _discard(stream: IO[bytes], length: int) -> None:
    """Read a refused body away (up to a bound), so the client sees our 400 rather than a reset socket."""
    remaining = min(length, DISCARD_LIMIT)
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            return
        remaining -= len(chunk)


class WebhookHandler:
    """Checks the bearer token and the body, then asks retention for each action the alerts carry."""

    def __init__(
        self, config: ExporterConfig, retention: RetentionRunner, instance_names: Iterable[str], results: Counter[str]
    ) -> None:
        self._config = config
        self._retention = retention
        self._instances = frozenset(instance_names)
        self._results = results

    def _finish(self, status: HTTPStatus, result: str, **body: Any) -> WebhookResult:
        self._results[result] += 1
        if result in ("unauthorized", "invalid"):
            log.warning("alertmanager webhook: %s (%s)", result, body.get("error", ""))
        return WebhookResult(status, result, {"result": result, **body})

    def _token(self) -> str | None:
        path = self._config.webhook_token_file
        if path is None:
            return None
        try:
            # Read per request, so that a rotated token applies without a restart.
            return path.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            log.error("exporter.webhook_token_file: cannot read %s: %s", path, exc)
            return None

    def handle(self, headers: Mapping[str, str], body_stream: IO[bytes]) -> WebhookResult:
        token = self._token()
        if token is None:
            return self._finish(
                HTTPStatus.UNAUTHORIZED, "unauthorized", error="webhook disabled: set exporter.webhook_token_file"
            )
        given = headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return self._finish(HTTPStatus.UNAUTHORIZED, "unauthorized", error="missing or wrong bearer token")
        length_header = headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            return self._finish(HTTPStatus.BAD_REQUEST, "invalid", error="Content-Length required")
        length = int(length_header)
        if length > self._config.webhook_max_body_bytes:
            _discard(body_stream, length)
            return self._finish(
                HTTPStatus.BAD_REQUEST, "invalid", error=f"body over {self._config.webhook_max_body_bytes} bytes"
            )
        try:
            alerts = parse_payload(body_stream.read(length))
        except _Invalid as exc:
            return self._finish(HTTPStatus.BAD_REQUEST, "invalid", error=str(exc))
        actions: list[str] = []
        for status, labels in alerts:
            action = labels.get("retention_action")
            if status != "firing" or action not in RETENTION_ACTIONS or labels.get("instance") not in self._instances:
                continue
            if action not in actions:
                actions.append(action)
        if not actions:
            return self._finish(HTTPStatus.OK, "ignored", actions=[])
        reports = {}
        for action in actions:
            log.warning("alertmanager asks for retention action %s", action)
            try:
                reports[action] = self._retention.request(action, trigger="alert", timeout=PASS_WAIT_SECONDS).file_count
            except TimeoutError:
                reports[action] = None  # still running: it finishes on its own, Alertmanager need not wait
        done = all(v is not None for v in reports.values())
        return self._finish(
            HTTPStatus.OK if done else HTTPStatus.ACCEPTED, "accepted", actions=actions, deleted=reports
        )

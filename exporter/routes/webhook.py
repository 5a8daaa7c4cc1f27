"""Alertmanager's webhook (payload version 4): alerts that carry `retention_action` free space here."""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import stat
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

from exporter.exchange import BodyProblem
from exporter.ratelimit import RateLimitedLog
from exporter.webconfig import parse_basic_authorization
from recorder.config import ExporterConfig
from recorder.domain.vocabulary import AlertAction, RetentionTrigger, WebhookResult, values

log = logging.getLogger(__name__)

# The actions an alert may ask for in its `retention_action` label.
ALERT_ACTIONS = frozenset(values(AlertAction))
# How long the webhook waits for the pass before answering 202; Alertmanager's own timeout is 10 s.
PASS_WAIT_SECONDS = 5.0
# Alertmanager's payload nests 3 levels (payload, alerts, alert, labels); anything much deeper is not one of
# its payloads, and refusing it before json.loads keeps a crafted body from exhausting the recursion limit.
MAX_JSON_DEPTH = 16
TOKEN_FILE_MAX_BYTES = 4096
# The media types Alertmanager (and curl users following the README) send.
JSON_MEDIA_TYPES = ("application/json",)
# One escape (a backslash and the byte after it): removed first, so that what is left of a string is a
# plain run between two quotes. Both steps are single linear passes in C; a pattern matching whole strings
# with their escapes backtracks quadratically on an unterminated one (`"\` repeated), holding the GIL.
_JSON_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# An alert is acted on once per firing (its fingerprint and startsAt; Alertmanager re-sends a firing alert
# every repeat_interval with both unchanged): a repeat, a replayed capture, or a delivery Alertmanager retried
# after a lost answer is answered "ignored". This many firings are remembered (an LRU), far more than a box's
# alerts fire between restarts.
SEEN_FIRINGS = 4096
# A firing that began longer ago than this is not acted on: retention acts on what the disk is now, and an
# alert that began a day ago has been re-sent (and acted on) before, or is a capture being replayed. A day
# covers Alertmanager's default repeat_interval (4 h) and a recorder down overnight.
MAX_ALERT_AGE_SECONDS = 24 * 3600.0
# How far in the future startsAt may be: Prometheus's and this box's clocks differ a little.
MAX_CLOCK_SKEW_SECONDS = 300.0


class PassReport(Protocol):
    """What the webhook reads of a finished retention pass."""

    @property
    def file_count(self) -> int: ...


class RetentionRunner(Protocol):
    def request(self, action: str, trigger: str = "alert", timeout: float = 30.0) -> PassReport: ...


@dataclass(frozen=True)
class WebhookAnswer:
    """The HTTP answer to one webhook request and the result it is counted under."""

    status: HTTPStatus
    result: WebhookResult
    body: Mapping[str, Any] = field(default_factory=dict)


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class Alert:
    """What the webhook reads of one alert of a payload."""

    status: str
    labels: dict[str, str]
    starts_at: float  # Unix time
    fingerprint: str


def _rfc3339(value: Any, where: str) -> float:
    if not isinstance(value, str) or len(value) > 64:
        raise _Invalid(f"{where}: expected an RFC 3339 time")
    text = value.strip()
    # Alertmanager writes nanoseconds; datetime reads up to microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}" if digits else text
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
        if parsed.tzinfo is None:
            raise ValueError("no zone")
        return parsed.timestamp()
    except (ValueError, OverflowError, OSError):
        raise _Invalid(f"{where}: expected an RFC 3339 time with a zone, got {value[:40]!r}") from None


def _fingerprint(alert: Mapping[str, Any], labels: Mapping[str, str], where: str) -> str:
    given = alert.get("fingerprint")
    if given is None:  # not every sender names it; Alertmanager's is a hash of the labels, as this is
        return json.dumps(sorted(labels.items()))
    if not isinstance(given, str) or len(given) > 128:
        raise _Invalid(f"{where}: expected a string of at most 128 characters")
    return given


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _Invalid(f"{where}: expected an object of strings")
    return value


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in `body`, counted without parsing it (brackets in strings skipped)."""
    # After the escapes are gone every quote opens or closes a string: the even pieces between quotes
    # are outside strings (an unterminated string's tail is an odd piece, skipped like any string).
    outside_strings = b"".join(_JSON_ESCAPE.sub(b"", body).split(b'"')[0::2])
    brackets = outside_strings.translate(None, delete=_NOT_BRACKETS)
    return max(accumulate(1 if b in b"[{" else -1 for b in brackets), default=0)


def parse_payload(body: bytes) -> list[Alert]:
    """Every alert of a version 4 payload; _Invalid names what is wrong."""
    if json_depth(body) > MAX_JSON_DEPTH:
        raise _Invalid(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Invalid(f"body is not JSON: {exc}") from None
    except ValueError as exc:  # an integer of more digits than int() converts (sys.get_int_max_str_digits)
        raise _Invalid(f"body: a number too long to read ({str(exc)[:80]})") from None
    except RecursionError:  # not reached after the depth check; kept so no body can escape unanswered
        raise _Invalid("body: JSON nested too deeply") from None
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
        labels = _str_map(alert.get("labels"), f"alerts[{index}].labels")
        starts_at = _rfc3339(alert.get("startsAt"), f"alerts[{index}].startsAt")
        parsed.append(Alert(status, labels, starts_at, _fingerprint(alert, labels, f"alerts[{index}].fingerprint")))
    return parsed


class SeenFirings:
    """The firings (fingerprint, startsAt) acted on, the most recent `size` of them. claim() is atomic, so two
    copies of one request arriving together act once."""

    def __init__(self, size: int = SEEN_FIRINGS) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, float], None] = OrderedDict()

    def claim(self, key: tuple[str, float]) -> bool:
        """True if this firing is new (it is remembered from now on); False if it was acted on already."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True

    def release(self, key: tuple[str, float]) -> None:
        """Forget a claim whose action failed, so that Alertmanager's retry acts on it."""
        with self._lock:
            self._seen.pop(key, None)


class TokenFile:
    """The webhook's bearer token, re-read when the file changes (a rotated token applies at once).

    A missing, unreadable, empty or non-UTF-8 file disables the webhook: `problem` says why, and the
    change is logged once (at start, and again only when the file changes), not at every request.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._token: str | None = None
        self.problem: str | None = None
        self._read()
        if self.problem is not None and path is not None:
            log.error("alertmanager webhook disabled: %s", self.problem)

    def current(self) -> str | None:
        """The token, or None when the webhook is disabled (see `problem`)."""
        if self._path is None:
            return None
        with self._lock:
            before = self.problem
            if self._changed():
                self._read()
                if self.problem != before:
                    if self.problem is None:
                        log.warning("alertmanager webhook enabled: %s is readable again", self._path)
                    else:
                        log.error("alertmanager webhook disabled: %s", self.problem)
            return self._token

    def _stat(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _changed(self) -> bool:
        return self._stat() != self._signature or self._signature is None

    def _read(self) -> None:
        path = self._path
        self._token = None
        if path is None:
            self.problem = "exporter.webhook_token_file is not set"
            return
        self._signature = self._stat()
        try:
            st = os.stat(path)
            # A FIFO or a device would block or never end: a token is a small regular file.
            if not stat.S_ISREG(st.st_mode):
                self.problem = f"exporter.webhook_token_file: {path} is not a regular file"
                return
            if st.st_size > TOKEN_FILE_MAX_BYTES:
                self.problem = f"exporter.webhook_token_file: {path} is over {TOKEN_FILE_MAX_BYTES} bytes"
                return
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            self.problem = f"exporter.webhook_token_file: {path} is not UTF-8 text"
            return
        except OSError as exc:
            self.problem = f"exporter.webhook_token_file: cannot read {path}: {exc.strerror or exc}"
            return
        token = text.strip()
        if not token:
            self.problem = f"exporter.webhook_token_file: {path} is empty"
            return
        self._token, self.problem = token, None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class WebhookHandler:
    """Checks the token and the body, then asks retention for each action the alerts carry.

    Every request ends in exactly one answer and one count under a result of exporter.metrics.WEBHOOK_RESULTS.
    The token is the webhook's own authentication, whatever else protects the exporter: Alertmanager sends
    it as `Authorization: Bearer <token>` (http_config.authorization) or as the password of basic auth
    (http_config.basic_auth, any user name), since it can send only one of the two.
    """

    def __init__(
        self,
        config: ExporterConfig,
        retention: RetentionRunner,
        instance_names: Iterable[str],
        results: Counter[str],
        refusals_log: RateLimitedLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._retention = retention
        self._instances = frozenset(instance_names)
        self._results = results
        self._results_lock = threading.Lock()
        self._token = TokenFile(config.webhook_token_file)
        # A client that keeps failing would otherwise write a line per request: one a minute, with a count.
        self._refusals_log = refusals_log or RateLimitedLog(log)
        self._clock = clock
        self.seen = SeenFirings()

    def _finish(self, status: HTTPStatus, result: WebhookResult, **body: Any) -> WebhookAnswer:
        with self._results_lock:
            self._results[result] += 1
        if status >= 400 and result is not WebhookResult.DISABLED:
            why = body.get("error", "")
            message = "alertmanager webhook: %s, answered %d (%s)"
            self._refusals_log.log(logging.WARNING, result, message, result, int(status), why)
        return WebhookAnswer(status, result, {"result": result, **body})

    def _authenticated(self, authorization: str, token: str) -> bool:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            given = value.strip()
        else:
            credentials = parse_basic_authorization(authorization)
            if credentials is None:
                return False
            given = credentials[1]
        return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))

    def authenticated(self, headers: Mapping[str, str]) -> bool:
        """The token is right (cheap: a stat of the token file and one comparison), for the server to ask
        before it reads a body."""
        token = self._token.current()
        return token is not None and self._authenticated(headers.get("Authorization", ""), token)

    def handle(self, headers: Mapping[str, str], body: bytes, body_problem: BodyProblem | None = None) -> WebhookAnswer:
        token = self._token.current()
        if token is None:
            return self._finish(
                HTTPStatus.SERVICE_UNAVAILABLE, WebhookResult.DISABLED, error=f"webhook disabled: {self._token.problem}"
            )
        if not self._authenticated(headers.get("Authorization", ""), token):
            return self._finish(HTTPStatus.UNAUTHORIZED, WebhookResult.UNAUTHORIZED, error="missing or wrong token")
        if body_problem is BodyProblem.UNAUTHENTICATED:  # the token changed between the head and now
            return self._finish(HTTPStatus.UNAUTHORIZED, WebhookResult.UNAUTHORIZED, error="token changed; retry")
        if body_problem is BodyProblem.TOO_LARGE:
            return self._finish(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                WebhookResult.TOO_LARGE,
                error=f"body over exporter.webhook_max_body_bytes ({self._config.webhook_max_body_bytes} bytes)",
            )
        if body_problem is BodyProblem.LENGTH_REQUIRED:
            return self._finish(HTTPStatus.LENGTH_REQUIRED, WebhookResult.INVALID, error="Content-Length required")
        if body_problem is BodyProblem.BUSY:
            return self._finish(
                HTTPStatus.SERVICE_UNAVAILABLE, WebhookResult.BUSY, error="too many requests at once; retry"
            )
        media_type = _media_type(headers.get("Content-Type"))
        if media_type not in JSON_MEDIA_TYPES:
            return self._finish(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                WebhookResult.UNSUPPORTED_MEDIA_TYPE,
                error=f"Content-Type must be application/json, got {media_type[:40] or 'none'!r}",
            )
        try:
            alerts = parse_payload(body)
        except _Invalid as exc:
            return self._finish(HTTPStatus.BAD_REQUEST, WebhookResult.INVALID, error=str(exc)[:200])
        actions: list[str] = []
        skipped: Counter[str] = Counter()
        claimed: list[tuple[str, float]] = []
        now = self._clock()
        for alert in alerts:
            labels = alert.labels
            action = labels.get("retention_action")
            if alert.status != "firing" or action not in ALERT_ACTIONS or labels.get("instance") not in self._instances:
                continue
            key = (alert.fingerprint, alert.starts_at)
            if key in claimed:
                continue  # the same alert twice in one payload
            if now - alert.starts_at > MAX_ALERT_AGE_SECONDS:
                skipped["too_old"] += 1
            elif alert.starts_at - now > MAX_CLOCK_SKEW_SECONDS:
                skipped["in_the_future"] += 1
            elif not self.seen.claim(key):
                skipped["already_acted_on"] += 1
            else:
                claimed.append(key)
                if action not in actions:
                    actions.append(action)
        if skipped:
            why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()))
            self._refusals_log.log(logging.WARNING, "skipped", "alertmanager webhook: not acting on alerts %s", why)
        if not actions:
            return self._finish(
                HTTPStatus.OK, WebhookResult.IGNORED, actions=[], **({"skipped": dict(skipped)} if skipped else {})
            )
        try:
            reports = self._run(actions)
        except BaseException:
            for key in claimed:
                self.seen.release(key)
            raise
        done = all(v is not None for v in reports.values())
        return self._finish(
            HTTPStatus.OK if done else HTTPStatus.ACCEPTED,
            WebhookResult.ACCEPTED,
            actions=actions,
            deleted=reports,
            **({"skipped": dict(skipped)} if skipped else {}),
        )

    def _run(self, actions: list[str]) -> dict[str, int | None]:
        reports: dict[str, int | None] = {}
        for action in actions:
            log.warning("alertmanager asks for retention action %s", action)
            try:
                reports[action] = self._retention.request(
                    action, trigger=RetentionTrigger.ALERT, timeout=PASS_WAIT_SECONDS
                ).file_count
            except TimeoutError:
                reports[action] = None  # still running: it finishes on its own, Alertmanager need not wait
        return reports

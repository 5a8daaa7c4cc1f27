"""The webhook handler as a plain object: a fake retention, a token file, bodies; no daemon, no HTTP."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path

import pytest
from conftest import small_config

from exporter.routes.webhook import MAX_ALERT_AGE_SECONDS, MAX_CLOCK_SKEW_SECONDS, WebhookHandler
from exporter.web import REQUEST_TIMEOUT
from recorder.config import ExporterConfig
from recorder.domain.vocabulary import WebhookResult

TOKEN = "s3cret-token"
INSTANCE = "recorder.example:9100"


def rfc3339(ts: float) -> str:
    """A time as Alertmanager writes startsAt (UTC, nanoseconds)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Report:
    file_count: int


class FakeRetention:
    """Records each pass asked for and answers it at once."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def request(self, action: str, trigger: str = "alert", timeout: float = 30.0) -> Report:
        self.asked.append((action, trigger))
        return Report(3)


def exporter_config(tmp_path: Path) -> ExporterConfig:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    return small_config(tmp_path, exporter={"webhook_token_file": str(token)}).exporter


def payload(*alerts: tuple[str, dict[str, str]]) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "status": "firing",
            "alerts": [{"status": s, "labels": labels, "startsAt": rfc3339(time.time())} for s, labels in alerts],
        }
    ).encode()


def handler(tmp_path: Path) -> tuple[WebhookHandler, FakeRetention, Counter[str]]:
    retention, results = FakeRetention(), Counter[str]()
    return WebhookHandler(exporter_config(tmp_path), retention, [INSTANCE], results), retention, results


def test_a_firing_alert_with_an_action_runs_one_pass_and_is_accepted(tmp_path: Path) -> None:
    webhook, retention, results = handler(tmp_path)
    labels = {"retention_action": "free_space", "instance": INSTANCE}
    answer = webhook.handle(JSON, payload(("firing", labels), ("firing", labels)))
    assert answer.status == HTTPStatus.OK and answer.result is WebhookResult.ACCEPTED
    assert retention.asked == [("free_space", "alert")]  # the same action twice in one payload: one pass
    assert answer.body["deleted"] == {"free_space": 3}
    assert results == {"accepted": 1}


def test_resolved_foreign_or_unknown_alerts_are_ignored(tmp_path: Path) -> None:
    webhook, retention, results = handler(tmp_path)
    body = payload(
        ("resolved", {"retention_action": "free_space", "instance": INSTANCE}),
        ("firing", {"retention_action": "free_space", "instance": "other:9100"}),
        ("firing", {"retention_action": "format_disk", "instance": INSTANCE}),
    )
    answer = webhook.handle(JSON, body)
    assert answer.result is WebhookResult.IGNORED and retention.asked == []
    assert results == {"ignored": 1}


def test_a_wrong_token_is_unauthorized_and_runs_nothing(tmp_path: Path) -> None:
    webhook, retention, results = handler(tmp_path)
    labels = {"retention_action": "free_space", "instance": INSTANCE}
    answer = webhook.handle({**JSON, "Authorization": "Bearer nope"}, payload(("firing", labels)))
    assert answer.status == HTTPStatus.UNAUTHORIZED and retention.asked == []
    assert results == {"unauthorized": 1}


def test_a_body_that_is_not_json_is_invalid(tmp_path: Path) -> None:
    webhook, _, results = handler(tmp_path)
    answer = webhook.handle(JSON, b"{not json")
    assert answer.status == HTTPStatus.BAD_REQUEST and answer.result is WebhookResult.INVALID
    assert results == {"invalid": 1}


def test_a_hostile_megabyte_of_unterminated_escapes_is_answered_invalid_within_the_request_deadline(
    tmp_path: Path,
) -> None:
    # `"\` repeated made the old string pattern backtrack quadratically while holding the GIL: 64 KiB took
    # a minute, a megabyte hours. The bound is the exporter's request deadline, far above the linear scan's
    # milliseconds (bench/bench_webhook_depth.py prints the figure), so a loaded machine does not flake it.
    webhook, retention, results = handler(tmp_path)
    for hostile in (b'"\\' * (512 * 1024), b'{"a": "' + b"\\" * (1024 * 1024), b"[" * 100 + b'"\\' * 500_000):
        started = time.monotonic()
        answer = webhook.handle(JSON, hostile)
        elapsed = time.monotonic() - started
        assert answer.status == HTTPStatus.BAD_REQUEST and answer.result is WebhookResult.INVALID
        assert elapsed < REQUEST_TIMEOUT, f"{len(hostile)} hostile bytes took {elapsed:.1f} s"
    assert retention.asked == [] and results == {"invalid": 3}


def _alert_at(starts_at: float, fingerprint: str = "f00d") -> bytes:
    labels = {"retention_action": "free_space", "instance": INSTANCE}
    alert = {"status": "firing", "labels": labels, "startsAt": rfc3339(starts_at), "fingerprint": fingerprint}
    return json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()


def test_a_firing_is_acted_on_once_however_often_it_is_sent(tmp_path: Path) -> None:
    webhook, retention, results = handler(tmp_path)
    began = time.time() - 60
    first = webhook.handle(JSON, _alert_at(began))
    assert first.result is WebhookResult.ACCEPTED
    # Alertmanager's repeat, or a captured request replayed: same fingerprint and startsAt, nothing runs.
    again = webhook.handle(JSON, _alert_at(began))
    assert again.status == HTTPStatus.OK and again.result is WebhookResult.IGNORED
    assert again.body["skipped"] == {"already_acted_on": 1}
    # The same alert firing anew (a later startsAt), or another alert, is acted on.
    assert webhook.handle(JSON, _alert_at(began + 30)).result is WebhookResult.ACCEPTED
    assert webhook.handle(JSON, _alert_at(began, "beef")).result is WebhookResult.ACCEPTED
    assert len(retention.asked) == 3 and results == {"accepted": 3, "ignored": 1}


def test_alerts_too_old_or_from_the_future_are_not_acted_on(tmp_path: Path) -> None:
    webhook, retention, results = handler(tmp_path)
    now = time.time()
    old = webhook.handle(JSON, _alert_at(now - MAX_ALERT_AGE_SECONDS - 60))
    assert old.result is WebhookResult.IGNORED and old.body["skipped"] == {"too_old": 1}
    ahead = webhook.handle(JSON, _alert_at(now + MAX_CLOCK_SKEW_SECONDS + 60))
    assert ahead.result is WebhookResult.IGNORED and ahead.body["skipped"] == {"in_the_future": 1}
    # A little skew either way is fine.
    assert webhook.handle(JSON, _alert_at(now + 5)).result is WebhookResult.ACCEPTED
    assert len(retention.asked) == 1 and results == {"ignored": 2, "accepted": 1}


def test_a_pass_that_fails_leaves_the_firing_for_alertmanagers_retry(tmp_path: Path) -> None:
    webhook, retention, _ = handler(tmp_path)
    began = time.time()

    def broken(action: str, trigger: str = "alert", timeout: float = 30.0) -> Report:
        raise RuntimeError("retention is gone")

    webhook._retention = type("Broken", (), {"request": staticmethod(broken)})()
    with pytest.raises(RuntimeError):
        webhook.handle(JSON, _alert_at(began))
    webhook._retention = retention
    assert webhook.handle(JSON, _alert_at(began)).result is WebhookResult.ACCEPTED


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": "4", "alerts": [], "n": ' + b"9" * 5000 + b"}",  # more digits than int() converts
        json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {}}]}).encode(),  # no startsAt
        json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}).encode(),
        json.dumps(
            {"version": "4", "alerts": [{"status": "firing", "labels": {}, "startsAt": "2026-12-01T10:00:00"}]}
        ).encode(),
    ],
)
def test_malformed_numbers_and_times_are_invalid_and_counted(tmp_path: Path, body: bytes) -> None:
    webhook, retention, results = handler(tmp_path)
    answer = webhook.handle(JSON, body)
    assert answer.status == HTTPStatus.BAD_REQUEST and answer.result is WebhookResult.INVALID, answer
    assert retention.asked == [] and results == {"invalid": 1}

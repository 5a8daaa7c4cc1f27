"""The HTTP surface on :9100: /metrics, health and readiness, the Alertmanager webhook, and the operator's
routes (the status page at `/`, pictures, recordings, clips: exporter/routes/operator.py).

HTTP itself (aiohttp in a thread of its own, connection limits, deadlines, pools) is exporter/web.py's, TLS
and basic auth exporter/webconfig.py's; this module is the route table and what each route answers. Every
scrape is written by prometheus_client (its text or OpenMetrics encoder, as the client's Accept asks), and
gzipped when the client accepts it, as prometheus_client's own handlers do.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from http import HTTPStatus
from typing import Protocol

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.openmetrics import exposition as openmetrics

from exporter import metrics as m
from exporter.collector import RecorderCollector
from exporter.exchange import Request
from exporter.ratelimit import FailureLimiter, RateLimitedLog
from exporter.routes.operator import OperatorRoutes
from exporter.routes.webhook import WebhookHandler
from exporter.web import SLOW_POOL, WebServer, listen_socket
from exporter.webconfig import (
    BasicAuthChecker,
    TLSContextSource,
    WebOptions,
    check_telemetry_path,
    resolve_web_config,
)
from recorder import __version__
from recorder.config import ExporterConfig
from recorder.state.ports import RecorderView
from recorder.state.snapshots import RecorderSnapshot

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/api/v1/alertmanager"
# Requests whose basic-auth credentials are in neither of the checker's caches need a bcrypt (~50 ms each):
# they run in a pool of their own, one thread (bcrypt is serialised anyway), with room for a few waiting;
# more are answered 503 at once. A flood of guesses then waits on itself, never scrapes with known
# credentials; and a guessing address is refused (429, no bcrypt) after AUTH_FAILURES failures in
# AUTH_FAILURE_WINDOW seconds, so a new scraper elsewhere finds the queue free within a retry or two.
AUTH_POOL = "auth"
AUTH_POOL_THREADS = 1
AUTH_QUEUE_LIMIT = 8
AUTH_FAILURES = 10
AUTH_FAILURE_WINDOW = 60.0
# Descriptors HTTP never takes, for recording: each camera's FFmpeg start (three pipes, their spares while
# spawning, the progress pipe, ffprobe) with room to spare, plus the daemon's own (the index, logs, /proc
# reads, pictures and clips). Connections are accepted only while more than this is free (web.DescriptorBudget),
# read against the soft RLIMIT_NOFILE at that moment.
FD_RESERVE_BASE = 32
FD_RESERVE_PER_CAMERA = 16
# What a route receives: the request, which it answers through _send (http.server's handler before).
_Handler = Request
# Below this a gzipped scrape saves less than its CPU costs (a 404's text, a tiny registry).
GZIP_MIN_BYTES = 1024
# (content type, gzipped) pairs whose concurrent scrapes share one rendering: the few forms real scrapers ask.
MAX_SHARED_RENDERS = 16


class ListenError(Exception):
    """The exporter could not bind its address; the message names the setting to change."""


class _Source(Protocol):
    def snapshot(self) -> RecorderSnapshot: ...


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def default_instance_names(listen_address: str) -> tuple[str, ...]:
    """Names Prometheus may give this recorder in its `instance` label, for the webhook's check."""
    host, port = split_address(listen_address)
    names = {listen_address, socket.gethostname(), socket.getfqdn()}
    names |= {f"{socket.gethostname()}:{port}", f"{socket.getfqdn()}:{port}"}
    if host in ("0.0.0.0", "::", "127.0.0.1", "localhost"):
        names |= {f"localhost:{port}", f"127.0.0.1:{port}"}
    return tuple(sorted(names))


def build_registry(
    recorder: RecorderView,
    webhook_results: Counter[str],
    *,
    exporter_metrics: bool = True,
    http_responses: Callable[[], Mapping[str, int]] = dict,
) -> CollectorRegistry:
    """A registry of our own (never the global one): the recorder's collector, and unless turned off
    (--web.disable-exporter-metrics) the process_* and python_* families about the daemon itself."""
    config = recorder.config
    registry = CollectorRegistry(auto_describe=False)
    if exporter_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    # The codec label of a camera whose snapshot does not carry one; the snapshot is the recorder's word on it.
    codecs = {view.config.id: view.codec for view in recorder.snapshot().cameras if view.codec is not None}
    registry.register(
        RecorderCollector(
            recorder,
            codec_of=codecs,
            container=config.recording.container_format.value,
            segment_time=config.recording.segment_time,
            stall_timeout=config.supervisor.stall_timeout,
            webhook_results=lambda: dict(webhook_results),
            http_responses=http_responses,
        )
    )
    return registry


Encoder = Callable[[CollectorRegistry], bytes]


def negotiate(accept: str) -> tuple[Encoder, str]:
    """prometheus_client's encoder and content type for an Accept header (choose_encoder), with two changes
    that do not change a byte of what is written:

    - a version that is not a number (`version=abc`) makes the library's comparison raise: such a client
      gets the text format, as one that names no format at all, not a 500;
    - asked for `escaping=underscores` (what Prometheus's OpenMetrics Accept means), the OpenMetrics encoder
      rewrites every sample's name a character at a time in Python, half of a scrape's time; it is called
      with allow-utf-8 instead, which writes a legacy-valid name as it is. Every name here is legacy-valid
      (exporter/metrics.py's and the library's own process_/python_ families), so the bytes are the same
      (tests/exporter/test_scrape_golden.py compares them).
    """
    try:
        encoder, content_type = choose_encoder(accept)
    except (TypeError, ValueError):
        encoder, content_type = choose_encoder("")
    if isinstance(encoder, functools.partial) and encoder.keywords.get("escaping") == openmetrics.UNDERSCORES:
        encoder = functools.partial(
            encoder.func, *encoder.args, **{**encoder.keywords, "escaping": openmetrics.ALLOWUTF8}
        )
    return encoder, content_type


class SharedRender:
    """Concurrent scrapes share one rendering: a scrape that arrives while one is being rendered takes
    that result (at most one rendering old) instead of rendering again. Two hundred scrapers at once
    then cost a handful of renderings, not two hundred."""

    def __init__(self, render: Callable[[], tuple[bytes, bool]]) -> None:
        self._render = render
        self._lock = threading.Lock()
        self._in_flight: Future[tuple[bytes, bool]] | None = None

    def get(self) -> tuple[bytes, bool]:
        with self._lock:
            future = self._in_flight
            owner = future is None
            if future is None:
                future = self._in_flight = Future()
        if not owner:
            return future.result()
        try:
            body = self._render()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(body)
        finally:
            with self._lock:
                self._in_flight = None
        return body


class ExporterServer:
    """Serves the recorder's state over HTTP in its own threads; recording never waits on it."""

    def __init__(self, config: ExporterConfig, recorder: RecorderView, web: WebOptions | None = None) -> None:
        web = web or WebOptions()
        self.config = config
        self.recorder = recorder
        self.web = web
        self.web_config = resolve_web_config(config, web.config_file)
        self.auth = BasicAuthChecker(self.web_config)
        tls = TLSContextSource(self.web_config.tls, self.web_config.source) if self.web_config.tls else None
        self.webhook_results: Counter[str] = Counter(dict.fromkeys(m.WEBHOOK_RESULTS, 0))
        self.registry = build_registry(
            recorder,
            self.webhook_results,
            exporter_metrics=not web.disable_exporter_metrics,
            http_responses=lambda: self.web_server.responses(),
        )
        names = config.instance_names or default_instance_names(config.listen_address)
        self.webhook = WebhookHandler(config, recorder.storage, names, self.webhook_results)
        self.operator = OperatorRoutes(
            recorder, metrics_path=web.telemetry_path, descriptors_free=lambda: self.web_server.descriptors_free()
        )
        self.telemetry_path = web.telemetry_path
        # The route table: (method, path) -> handler. HEAD is served by the GET handler without a body.
        self.routes: dict[tuple[str, str], Callable[[Request], None]] = {
            ("GET", "/-/healthy"): self._healthy,
            ("GET", "/-/ready"): self._ready,
            ("POST", WEBHOOK_PATH): self._alertmanager,
            **self.operator.routes(),  # the status page at `/`, pictures, recordings, clips
        }
        check_telemetry_path(web.telemetry_path, tuple(sorted({path for _, path in self.routes})))
        self.routes[("GET", web.telemetry_path)] = self._metrics
        # Routes that authenticate by themselves: the webhook's token is its credential, and Alertmanager
        # can send only one Authorization header, so the exporter's basic auth does not apply there.
        self._own_auth = frozenset({WEBHOOK_PATH})
        self._auth_log = RateLimitedLog(log)
        self.auth_failures = FailureLimiter(AUTH_FAILURES, AUTH_FAILURE_WINDOW)
        # One shared rendering per (content type, gzipped): the encoders differ by Accept's version and escaping.
        self._renders: dict[tuple[str, bool], SharedRender] = {}
        self._renders_lock = threading.Lock()
        # Scrapes answered, by (media type, gzipped): which form the scrapers negotiated (tests read it).
        self.scrapes: Counter[tuple[str, bool]] = Counter()
        host, port = split_address(config.listen_address)
        try:
            self._listener = listen_socket(host, port)
        except OSError as exc:
            hint = " (node_exporter's default is 9100 too)" if port == 9100 else ""
            raise ListenError(
                f"cannot listen on {config.listen_address}: {exc.strerror or exc}{hint}; "
                "choose another with --listen-address or exporter.listen_address"
            ) from None
        self.tls = tls
        self.web_server = WebServer(
            self._listener,
            self.handle,
            server_name=f"camera-recorder/{__version__}",
            max_body_bytes=config.webhook_max_body_bytes,
            tls_context=tls.context if tls is not None else None,
            # The webhook may wait seconds for a retention pass, a picture up to ten for FFmpeg, a clip as
            # long as its download: never in the scrapers' threads.
            pools={**self.operator.pools(), AUTH_POOL: AUTH_POOL_THREADS},
            pool_of=self._pool_of,
            queue_limits={AUTH_POOL: AUTH_QUEUE_LIMIT},
            fd_reserve=self.fd_reserve,
            may_read_body=self._may_read_body,
        )
        self.scheme = "https" if tls is not None else "http"

    @property
    def address(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}" if ":" not in str(host) else f"[{host}]:{port}"

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def fd_reserve(self) -> int:
        """Descriptors kept for recording (FD_RESERVE_*), for the cameras configured now (a reload may add some)."""
        return FD_RESERVE_BASE + FD_RESERVE_PER_CAMERA * len(self.recorder.supervisors)

    def start(self) -> None:
        self.web_server.start()

    def stop(self) -> None:
        self.web_server.stop()
        self._listener.close()

    def alive(self) -> bool:
        """True while the I/O thread's event loop runs (it accepts, reads and answers every connection): a
        liveness check for /-/healthy and the systemd watchdog."""
        return self.web_server.alive()

    # -- routing --------------------------------------------------------------------------------

    def handle(self, request: Request) -> None:
        path = request.route
        guess = False  # credentials that cost a bcrypt: a failure counts against the client's address
        if path not in self._own_auth and self.auth.enabled:
            who = str(request.client_address[0])
            guess = self.auth.needs_bcrypt(request.headers.get("Authorization", ""))
            wait = self.auth_failures.retry_after(who) if guess else 0.0
            if wait:
                self._auth_log.log(logging.WARNING, "basic-limited", "basic auth: %s failed %d times in %g s; "
                                   "refusing its new credentials for %.0f s", who, self.auth_failures.max_failures,
                                   self.auth_failures.window, wait)  # fmt: skip
                self._send(request, HTTPStatus.TOO_MANY_REQUESTS, b"too many failed logins; retry later\n",
                           "text/plain", {"Retry-After": str(max(1, round(wait)))})  # fmt: skip
                return
        if path not in self._own_auth and not self._authorized(request):
            who = request.client_address[0]
            if guess:
                self.auth_failures.failed(str(who))
            self._auth_log.log(logging.WARNING, "basic", "basic auth failed for %s from %s", path, who)
            self._send(request, HTTPStatus.UNAUTHORIZED, b"unauthorized\n", "text/plain",
                       {"WWW-Authenticate": 'Basic realm="camera-recorder"'})  # fmt: skip
            return
        route = self.routes.get(("GET" if request.command == "HEAD" else request.command, path))
        route = route or self.operator.find_route(request.command, path)
        if route is None:
            allowed = [method for method, route_path in self.routes if route_path == path]
            status = HTTPStatus.METHOD_NOT_ALLOWED if allowed else HTTPStatus.NOT_FOUND
            if "GET" in allowed:
                allowed.append("HEAD")
            headers = {"Allow": ", ".join(sorted(allowed))} if allowed else {}
            self._send(request, status, f"{status.phrase}\n".encode(), "text/plain", headers)
            return
        route(request)

    def _pool_of(self, request: Request) -> str | None:
        """Called in the I/O thread, so cheap: credentials that need bcrypt go to AUTH_POOL. The request then
        runs there whole (its route included), but only the first one with those credentials: later ones are
        cache hits and go to their route's pool."""
        if request.route == WEBHOOK_PATH:
            return SLOW_POOL
        if (
            self.auth.enabled
            and request.route not in self._own_auth
            and self.auth.needs_bcrypt(request.headers.get("Authorization", ""))
            # An address past its failures is refused without bcrypt: in the route's pool, at once.
            and not self.auth_failures.retry_after(str(request.client_address[0]))
        ):
            return AUTH_POOL
        return self.operator.pool_of(request)

    def _may_read_body(self, request: Request) -> bool:
        """In the I/O thread, before the body: only a request whose credentials are already good spends any of
        the body budget (the webhook's token is one comparison; basic auth answers from its cache)."""
        if request.route == WEBHOOK_PATH:
            return self.webhook.authenticated(request.headers)
        return not self.auth.enabled or self.auth.verified(request.headers.get("Authorization", ""))

    def _authorized(self, request: Request) -> bool:
        return not self.auth.enabled or self.auth.check(request.headers.get("Authorization", ""))

    def _send(
        self,
        request: Request,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        request.respond(status, body, content_type, headers)

    def _metrics(self, request: _Handler) -> None:
        encoder, content_type = negotiate(request.headers.get("Accept", ""))
        gzipped = gzip_accepted(request.headers.get("Accept-Encoding", ""))
        key = (content_type, gzipped)
        render = self._renders.get(key)
        if render is None:
            fresh = SharedRender(lambda: self._render(encoder, gzipped))
            with self._renders_lock:
                # The content type echoes the client's version and escaping: a client sending a new one on
                # every scrape must not grow this table without end; past the bound its renderings go unshared.
                if len(self._renders) < MAX_SHARED_RENDERS:
                    render = self._renders.setdefault(key, fresh)
            render = render or fresh
        body, compressed = render.get()
        self.scrapes[(content_type.split(";", 1)[0], compressed)] += 1
        headers = {"Vary": "Accept, Accept-Encoding"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        self._send(request, HTTPStatus.OK, body, content_type, headers)

    def _render(self, encoder: Encoder, gzipped: bool) -> tuple[bytes, bool]:
        body = encoder(self.registry)
        if gzipped and len(body) >= GZIP_MIN_BYTES:
            # Level 6, gzip's default: 76 kB of a 16-camera scrape become ~7 kB in about a millisecond.
            return gzip.compress(body, compresslevel=6, mtime=0), True
        return body, False

    def _healthy(self, request: _Handler) -> None:
        # Fails while a supervision loop stops going round (the same test that starves systemd's watchdog).
        stuck = self.recorder.snapshot().stuck
        if not stuck:
            self._send(request, HTTPStatus.OK, b"Healthy\n", "text/plain; charset=utf-8")
            return
        body = json.dumps({"healthy": False, "stuck": list(stuck)}).encode() + b"\n"
        self._send(request, HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json")

    def _ready(self, request: _Handler) -> None:
        snap = self.recorder.snapshot()
        cameras = {view.config.id: view.status.state.value for view in snap.cameras}
        body = json.dumps({"ready": snap.ready, "cameras": cameras}).encode() + b"\n"
        status = HTTPStatus.OK if snap.ready else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(request, status, body, "application/json")

    def _alertmanager(self, request: _Handler) -> None:
        result = self.webhook.handle(request.headers, request.body, request.body_problem)
        self._send(request, result.status, json.dumps(result.body).encode() + b"\n", "application/json")

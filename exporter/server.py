"""The HTTP surface on :9100: /metrics, a landing page, health and readiness, the Alertmanager webhook."""

from __future__ import annotations

import base64
import hmac
import html
import json
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from exporter.collector import RecorderCollector
from exporter.exposition import CONTENT_TYPE as TEXT_CONTENT_TYPE
from exporter.exposition import render_text
from exporter.operator_routes import OperatorRoutes
from exporter.webhook import WebhookHandler, WebhookResult
from recorder import __version__
from recorder.config import ExporterConfig
from recorder.daemon import Recorder, RecorderSnapshot
from recorder.presets import encoder_preset

log = logging.getLogger(__name__)


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


def build_registry(recorder: Recorder, webhook_results: Counter[str]) -> CollectorRegistry:
    """A registry of our own (never the global one): the recorder's collector and the process ones."""
    config = recorder.config
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    codecs = {cam.id: encoder_preset(cam, config)[0].value for cam in config.cameras}
    registry.register(
        RecorderCollector(
            recorder,
            codec_of=codecs,
            container=config.recording.container_format.value,
            segment_time=config.recording.segment_time,
            stall_timeout=config.supervisor.stall_timeout,
            webhook_results=lambda: dict(webhook_results),
        )
    )
    return registry


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Set by ExporterServer before serving.
    app: ExporterServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or fails the TLS handshake is its own problem, not a traceback in our log.
        log.debug("request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"camera-recorder/{__version__}"
    protocol_version = "HTTP/1.1"
    # A client that connects and goes quiet holds one thread for this long, never the server.
    timeout = 30

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self.server.app.handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.app.handle(self, "HEAD")

    def do_POST(self) -> None:
        self.server.app.handle(self, "POST")


class ExporterServer:
    """Serves the recorder's state over HTTP in its own threads; recording never waits on it."""

    def __init__(self, config: ExporterConfig, recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.webhook_results: Counter[str] = Counter()
        self.registry = build_registry(recorder, self.webhook_results)
        names = config.instance_names or default_instance_names(config.listen_address)
        self.webhook = WebhookHandler(config, recorder.storage, names, self.webhook_results)
        self.operator = OperatorRoutes(recorder)  # the status page, pictures, recordings, clips
        host, port = split_address(config.listen_address)
        server_class = _Server
        if ":" in host:
            server_class = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        try:
            self._httpd = server_class((host, port), _Handler)
        except OSError as exc:
            hint = " (node_exporter's default is 9100 too)" if port == 9100 else ""
            raise ListenError(
                f"cannot listen on {config.listen_address}: {exc.strerror or exc}{hint}; "
                "choose another with --listen-address or exporter.listen_address"
            ) from None
        if config.tls_cert_file and config.tls_key_file:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
            except (OSError, ssl.SSLError) as exc:
                self._httpd.server_close()
                raise ListenError(f"exporter.tls_cert_file/tls_key_file: cannot load: {exc}") from None
            # The handshake happens in the request's own thread (see _Handler.setup), under its timeout:
            # done in accept() it would let one silent client block the whole server.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._httpd.app = self
        self._thread: threading.Thread | None = None
        self.scheme = "https" if config.tls_cert_file else "http"

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}" if ":" not in str(host) else f"[{host}]:{port}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        # No poll interval: an idle exporter sleeps until a request comes; stop() wakes it itself.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(None,), name="exporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        stopper = threading.Thread(target=self._httpd.shutdown, name="exporter-stop", daemon=True)
        stopper.start()
        # serve_forever notices the shutdown request only when a connection wakes it: make one.
        host, port = self._httpd.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError:
            pass  # the listener is gone already; shutdown() then returns by itself
        stopper.join(5)
        self._httpd.server_close()

    # -- routing --------------------------------------------------------------------------------

    def handle(self, request: _Handler, method: str) -> None:
        path = urlsplit(request.path).path
        try:
            if not self._authorized(request):
                self._send(request, HTTPStatus.UNAUTHORIZED, b"unauthorized\n", "text/plain",
                           {"WWW-Authenticate": 'Basic realm="camera-recorder"'})  # fmt: skip
                return
            route = {
                ("GET", "/metrics"): self._metrics,
                ("GET", "/"): self._landing,
                ("GET", "/-/healthy"): self._healthy,
                ("GET", "/-/ready"): self._ready,
                ("POST", "/api/v1/alertmanager"): self._alertmanager,
                **self.operator.routes(),
            }.get(("GET" if method == "HEAD" else method, path)) or self.operator.find_route(method, path)
            if route is None:
                allowed = path in ("/metrics", "/", "/-/healthy", "/-/ready", "/api/v1/alertmanager") or (
                    ("GET", path) in self.operator.routes()
                )
                status = HTTPStatus.METHOD_NOT_ALLOWED if allowed else HTTPStatus.NOT_FOUND
                self._send(request, status, f"{status.phrase}\n".encode(), "text/plain")
                return
            route(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the scraper gave up; nothing to tell it

    def _authorized(self, request: _Handler) -> bool:
        username = self.config.basic_auth_username
        if username is None or self.config.basic_auth_password_file is None:
            return True
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given_user, _, given_password = base64.b64decode(header[6:], validate=True).decode().partition(":")
            password = self.config.basic_auth_password_file.read_text().strip()
        except (ValueError, OSError):
            return False
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a user name may have them.
        user_ok = hmac.compare_digest(given_user.encode(), username.encode())
        return user_ok & hmac.compare_digest(given_password.encode(), password.encode())

    def _send(
        self,
        request: _Handler,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    def _metrics(self, request: _Handler) -> None:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        if content_type.startswith("text/plain"):
            encoder, content_type = render_text, TEXT_CONTENT_TYPE
        self._send(request, HTTPStatus.OK, encoder(self.registry), content_type)

    def _healthy(self, request: _Handler) -> None:
        self._send(request, HTTPStatus.OK, b"Healthy\n", "text/plain; charset=utf-8")

    def _ready(self, request: _Handler) -> None:
        snap = self.recorder.snapshot()
        cameras = {view.config.id: view.status.state.value for view in snap.cameras}
        body = json.dumps({"ready": snap.ready, "cameras": cameras}).encode() + b"\n"
        status = HTTPStatus.OK if snap.ready else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(request, status, body, "application/json")

    def _alertmanager(self, request: _Handler) -> None:
        result: WebhookResult = self.webhook.handle(request.headers, request.rfile)
        headers = {}
        if result.status >= 400:
            # A refused body may be left unread on the socket: this connection cannot carry another request.
            request.close_connection = True
            headers["Connection"] = "close"
        self._send(request, result.status, json.dumps(result.body).encode() + b"\n", "application/json", headers)

    def _landing(self, request: _Handler) -> None:
        self._send(
            request, HTTPStatus.OK, render_landing(self.recorder.snapshot()).encode(), "text/html; charset=utf-8"
        )


def _ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0.0, now - timestamp)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_landing(snap: RecorderSnapshot) -> str:
    """The landing page: version, every camera with its state, and links."""
    now = time.time()
    rows = []
    for view in snap.cameras:
        status = view.status
        acc = snap.storage.cameras.get(view.config.id)
        horizon = (
            f"{(now - acc.oldest_start) / 86400:.1f} days" if acc is not None and acc.oldest_start is not None else "-"
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    view.config.id,
                    view.config.name,
                    status.state.value,
                    f"{status.fps:.1f}" + (f" / {view.config.framerate}" if view.config.framerate else ""),
                    _ago(status.last_segment_at, now),
                    horizon,
                    sum(status.restarts.values()),
                )
            )
            + "</tr>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>camera-recorder</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}</style></head>
<body><h1>camera-recorder</h1>
<p>Version {html.escape(snap.version)}, FFmpeg {html.escape(snap.ffmpeg_version)}, hot-plug: {snap.hotplug_mode}</p>
<table><tr><th>camera</th><th>name</th><th>state</th><th>fps</th><th>last segment</th>
<th>retention horizon</th><th>restarts</th></tr>
{"".join(rows)}
</table>
<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li>
<li><a href="-/ready">Readiness</a></li></ul>
</body></html>
"""

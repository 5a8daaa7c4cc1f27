"""TLS handshakes off the exporter's event loop (exporter/tls.py, issue 22): a handshake that takes long holds up
no scrape, a flood of handshakes is bounded in threads and cut at its deadline, and the transport that follows
the handshake behaves as asyncio's own (client certificates, renewal, keep-alive, back-pressure, sendfile,
close and abort without leaking descriptors). Last, the real daemon serves TLS to curl during a flood."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from daemon_harness import REPO, free_port, write_config
from tls_certs import CertPair, make_ca, make_cert

from exporter import tls as tls_module
from exporter.exchange import Request
from exporter.tls import HANDSHAKE_THREADS, HandshakePool, TLSHandshake, TLSTransport
from exporter.web import STREAM_CHUNK_BYTES, WebServer, listen_socket, open_descriptors
from exporter.webconfig import TLSContextSource, TLSServerConfig

BLOCKED_NAME = "blocked.test"  # the server name whose handshake the SNI callback holds
HANDSHAKE_DEADLINE = 2.0  # the servers' request_timeout here: a stalled handshake is cut after it


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertPair]:
    folder = tmp_path_factory.mktemp("certs")
    ca = make_ca(folder)
    return {
        "ca": ca,
        "server": make_cert(folder, "server", ca, cn="first"),
        "renewed": make_cert(folder, "renewed", ca, cn="second"),
        "client": make_cert(folder, "client", ca, cn="prometheus"),
        "stranger": make_cert(folder, "stranger"),
    }


def server_context(certs: dict[str, CertPair], *, client_auth: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["server"].cert, certs["server"].key)
    if client_auth:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(certs["ca"].cert))
    return context


def client_context(certs: dict[str, CertPair], client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["ca"].cert))
    context.check_hostname = False  # BLOCKED_NAME is not in the certificate; the chain is still verified
    if client is not None:
        context.load_cert_chain(certs[client].cert, certs[client].key)
    return context


class App:
    """Answers every request with its path; /stream sends `stream_chunks` chunks of STREAM_CHUNK_BYTES."""

    stream_chunks = 64

    def __call__(self, request: Request) -> None:
        if request.path == "/stream":
            chunks = (bytes([i % 251]) * STREAM_CHUNK_BYTES for i in range(self.stream_chunks))
            request.respond_stream(HTTPStatus.OK, "application/octet-stream", None, chunks)
            return
        request.respond(HTTPStatus.OK, f"answered {request.path}\n".encode(), "text/plain")

    def expected_stream(self) -> bytes:
        return b"".join(bytes([i % 251]) * STREAM_CHUNK_BYTES for i in range(self.stream_chunks))


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[int, WebServer]]]:
    started: list[tuple[WebServer, socket.socket]] = []

    def start(context: Callable[[], ssl.SSLContext], **kwargs: Any) -> tuple[int, WebServer]:
        listener = listen_socket("127.0.0.1", 0)
        server = WebServer(listener, App(), server_name="test", max_body_bytes=1024, tls_context=context,
                           request_timeout=HANDSHAKE_DEADLINE, **kwargs)  # fmt: skip
        server.start()
        started.append((server, listener))
        return listener.getsockname()[1], server

    yield start
    for server, listener in started:
        server.stop()
        listener.close()


def https(port: int, context: ssl.SSLContext, timeout: float = 5.0) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)


def get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def client_hello(context: ssl.SSLContext, server_name: str = "localhost") -> bytes:
    """The first flight of a TLS client, to send on a raw socket that then stalls."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed `sock` (what it sent before is read away)."""
    sock.settimeout(0)  # no waiting: what has arrived, or BlockingIOError
    try:
        while sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def answered_hello(sock: socket.socket) -> bool:
    """True once the server's first flight (ServerHello ... Finished) has arrived on `sock`."""
    sock.settimeout(0)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    assert data, "the server closed instead of answering the ClientHello"
    return True


def tls_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("exporter-tls"))


def blocking_sni(context: ssl.SSLContext) -> tuple[threading.Event, threading.Event]:
    """Make `context` hold a handshake for BLOCKED_NAME in its SNI callback until `release` is set."""
    entered, release = threading.Event(), threading.Event()

    def hold(tls: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        if name == BLOCKED_NAME:
            entered.set()
            release.wait(30)

    context.sni_callback = hold
    return entered, release


# -- the handshake is off the loop ------------------------------------------------------------------------


def test_a_handshake_held_in_its_sni_callback_holds_up_no_scrape_and_completes_after(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    """With handshakes on the event loop (asyncio's TLS), the held SNI callback holds the loop: the scraper's
    next answer and the new client's handshake would both time out."""
    context = server_context(certs)
    entered, release = blocking_sni(context)
    port, _ = serve(lambda: context)
    scraper = https(port, client_context(certs))
    blocked_result: list[Any] = []

    def blocked_client() -> None:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
                client_context(certs).wrap_socket(raw, server_hostname=BLOCKED_NAME) as tls,
            ):
                tls.sendall(b"GET /blocked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                blocked_result.append(b"".join(iter(lambda: tls.recv(65536), b"")))
        except Exception as exc:
            blocked_result.append(exc)

    try:
        assert get(scraper, "/metrics") == (200, b"answered /metrics\n")  # connected before the hold
        blocked = threading.Thread(target=blocked_client)
        blocked.start()
        assert entered.wait(10), "the held handshake never reached the SNI callback"
        for _ in range(3):
            assert get(scraper, "/metrics") == (200, b"answered /metrics\n")
        newcomer = https(port, client_context(certs))
        try:
            assert get(newcomer, "/new") == (200, b"answered /new\n")
        finally:
            newcomer.close()
        assert blocked.is_alive() and not blocked_result  # still held
    finally:
        release.set()
        scraper.close()
    blocked.join(10)
    assert len(blocked_result) == 1 and isinstance(blocked_result[0], bytes), blocked_result
    assert blocked_result[0].startswith(b"HTTP/1.1 200 ") and blocked_result[0].endswith(b"answered /blocked\n")


def test_a_handshake_flood_is_bounded_in_threads_cut_at_its_deadline_and_scrapes_go_on(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    context = server_context(certs)
    leftover_threads = tls_threads()  # an earlier test's pool, still winding down
    port, server = serve(lambda: context)
    hello = client_hello(client_context(certs))
    stop = threading.Event()
    full_handshakes = [0]
    failures: list[BaseException] = []

    def handshake_in_a_loop() -> None:
        ctx = client_context(certs)
        while not stop.is_set():
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    ctx.wrap_socket(raw, server_hostname="localhost"),
                ):
                    full_handshakes[0] += 1
            except OSError as exc:  # refused at the cap would be a failure too: the cap is far above this
                failures.append(exc)
                return

    scraper = https(port, client_context(certs))
    stalled: list[socket.socket] = []
    flooders = [threading.Thread(target=handshake_in_a_loop) for _ in range(6)]
    try:
        assert get(scraper, "/metrics")[0] == 200
        for _ in range(40):  # a ClientHello each, then nothing: each waits for its Finished
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(hello)
            stalled.append(sock)
        for thread in flooders:
            thread.start()
        answered = 0
        max_threads = 0
        # Scrape until every stalled handshake is cut at its deadline; each scrape has 5 s (http.client's timeout).
        while not all(closed_by_server(s) for s in stalled):
            assert get(scraper, "/metrics") == (200, b"answered /metrics\n")
            answered += 1
            max_threads = max(max_threads, tls_threads())
            assert server.handshakes is not None and server.handshakes.completed < 10**6
            if answered > 10_000:
                raise AssertionError("the stalled handshakes were never cut")
        assert answered >= 5
        assert 0 < max_threads <= leftover_threads + HANDSHAKE_THREADS
        assert server.handshakes.cut_deadline >= len(stalled)
        assert full_handshakes[0] > 0 and not failures, failures
    finally:
        stop.set()
        for thread in flooders:
            thread.join(15)
        scraper.close()
        for sock in stalled:
            sock.close()


def test_a_full_queue_cuts_its_oldest_waiting_handshake(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread, room for one waiting: while the thread is held, a second ClientHello waits and a third
    cuts the second; released, the held one and the third complete."""
    monkeypatch.setattr(tls_module, "HANDSHAKE_THREADS", 1)
    monkeypatch.setattr(tls_module, "HANDSHAKE_QUEUE", 1)
    context = server_context(certs)
    entered, release = blocking_sni(context)
    port, server = serve(lambda: context)
    clients = client_context(certs)
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    second = socket.create_connection(("127.0.0.1", port), timeout=10)
    third = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        held.sendall(client_hello(clients, BLOCKED_NAME))
        assert entered.wait(10)
        pool = server.handshakes
        assert pool is not None
        second.sendall(client_hello(clients))
        wait_for(lambda: pool.waiting == 1, timeout=5, what="the second handshake to wait")
        third.sendall(client_hello(clients))
        wait_for(lambda: closed_by_server(second), timeout=5, what="the oldest waiting handshake to be cut")
        assert pool.cut_queue_full == 1 and pool.waiting == 1
        release.set()
        for sock in (held, third):
            wait_for(lambda: answered_hello(sock), timeout=5, what="the server's answer to a ClientHello")  # noqa: B023
        assert pool.waiting == 0 and pool.cut_queue_full == 1
    finally:
        release.set()
        for sock in (held, second, third):
            sock.close()


def test_connections_in_their_handshake_count_against_the_cap_and_make_room_first(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    """They did not count before (asyncio made the protocol's connection only after the handshake)."""
    context = server_context(certs)
    port, server = serve(lambda: context, max_connections=3)
    scraper = https(port, client_context(certs))
    stalled: list[socket.socket] = []
    try:
        assert get(scraper, "/metrics")[0] == 200
        for _ in range(2):
            stalled.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_for(lambda: server.open_connections == 3, timeout=5, what="two connections in their handshake")
        # A fourth makes room: the oldest in its handshake goes, not the idle scraper that proved itself.
        newcomer = https(port, client_context(certs))
        try:
            assert get(newcomer, "/new")[0] == 200
        finally:
            newcomer.close()
        wait_for(lambda: closed_by_server(stalled[0]), timeout=5, what="the oldest handshake to make room")
        assert not closed_by_server(stalled[1])
        assert get(scraper, "/metrics")[0] == 200  # the same kept-alive connection
        assert server.evictions >= 1
    finally:
        scraper.close()
        for sock in stalled:
            sock.close()


# -- the transport after the handshake ------------------------------------------------------------------


def test_client_certificates_are_required_and_verified_in_the_pool(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    context = server_context(certs, client_auth=True)
    port, server = serve(lambda: context)
    good = https(port, client_context(certs, "client"))
    try:
        assert get(good, "/metrics") == (200, b"answered /metrics\n")
    finally:
        good.close()
    for refused in (client_context(certs), client_context(certs, "stranger")):
        conn = https(port, refused)
        try:
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
                get(conn, "/metrics")
        finally:
            conn.close()
    assert server.handshakes is not None
    wait_for(lambda: server.handshakes.failed == 2, timeout=5, what="two refused handshakes")  # type: ignore[union-attr]


def test_a_renewed_certificate_written_in_place_is_served_to_new_connections(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]], tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(certs["server"].cert.read_bytes())
    key.write_bytes(certs["server"].key.read_bytes())
    source = TLSContextSource(TLSServerConfig(cert, key), check_interval=0.0)
    port, _ = serve(source.context)
    clients = client_context(certs)

    def served_cn() -> str:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            clients.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return str(dict(item[0] for item in tls.getpeercert()["subject"])["commonName"])

    kept = https(port, clients)
    try:
        assert get(kept, "/before")[0] == 200
        assert served_cn() == "first"
        key.write_bytes(certs["renewed"].key.read_bytes())
        cert.write_bytes(certs["renewed"].cert.read_bytes())
        wait_for(lambda: served_cn() == "second", timeout=5, what="the renewed certificate")
        assert source.reloads == 1
        assert get(kept, "/after")[0] == 200  # a connection made before goes on
    finally:
        kept.close()


def test_keep_alive_reuses_one_connection_and_one_handshake(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    port, server = serve(lambda: server_context(certs))
    conn = https(port, client_context(certs))
    try:
        assert get(conn, "/1")[0] == 200
        sock = conn.sock
        for i in range(2, 8):
            assert get(conn, f"/{i}") == (200, f"answered /{i}\n".encode())
        assert conn.sock is sock
        assert server.handshakes is not None and server.handshakes.completed == 1
    finally:
        conn.close()


def test_a_big_stream_to_a_reader_that_waits_is_held_back_then_arrives_whole(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    """Back-pressure through the TLS transport: while the client reads nothing the producer waits on the full
    socket buffer (StreamProgress.held); once it reads, every byte arrives."""
    port, server = serve(lambda: server_context(certs))
    App.stream_chunks = 160  # 10 MiB: more than every buffer between the two
    conn = https(port, client_context(certs), timeout=30)
    try:
        conn.request("GET", "/stream")
        response = conn.getresponse()
        wait_for(lambda: any(p.held() for p in list(server.streams)), timeout=10, what="the stream to be held")
        assert all(p.sent_bytes < 160 * STREAM_CHUNK_BYTES for p in list(server.streams))
        body = bytearray()
        while chunk := response.read(16 << 10):  # a reader taking small bites
            body += chunk
        assert bytes(body) == App().expected_stream()
        assert get(conn, "/after")[0] == 200  # the chunked answer ended cleanly: the connection is reused
    finally:
        App.stream_chunks = 64
        conn.close()


def test_close_abort_and_broken_handshakes_leave_no_descriptor_behind(
    certs: dict[str, CertPair], serve: Callable[..., tuple[int, WebServer]]
) -> None:
    port, server = serve(lambda: server_context(certs))
    clients = client_context(certs)
    hello = client_hello(clients)
    warm = https(port, clients)
    assert get(warm, "/warm")[0] == 200  # the pool's threads and the loop's own descriptors exist from here
    warm.close()
    wait_for(lambda: server.open_connections == 0, timeout=5, what="the warm-up connection to close")
    before = open_descriptors()

    for _ in range(3):
        # The server closes after its answer (close_notify, then the socket).
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            clients.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"".join(iter(lambda: tls.recv(65536), b"")).endswith(b"answered /close\n")
        # The client sends close_notify and waits for the server's.
        with clients.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                 server_hostname="localhost") as tls:  # fmt: skip
            tls.sendall(b"GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
            tls.unwrap()
        # The client resets the connection: after its handshake, and in the middle of it.
        for send in (None, hello):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            if send is None:
                raw = clients.wrap_socket(raw, server_hostname="localhost")
            else:
                raw.sendall(send)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST
            raw.close()
        # Plain HTTP to the TLS port, and a half-close in the handshake.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_for(lambda: closed_by_server(raw), timeout=5, what="plain HTTP to be refused")  # noqa: B023
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(hello[:20])
            raw.shutdown(socket.SHUT_WR)
            wait_for(lambda: closed_by_server(raw), timeout=5, what="the half-closed handshake to close")  # noqa: B023

    wait_for(lambda: server.open_connections == 0, timeout=10, what="every connection to be forgotten")
    wait_for(lambda: open_descriptors() <= before, timeout=10,
             what=f"descriptors back to {before} (now {open_descriptors()})")  # fmt: skip


def test_the_transport_serves_sendfile_flow_control_and_the_extra_info_asyncio_offers(
    certs: dict[str, CertPair], tmp_path: Path
) -> None:
    """TLSTransport directly, under a protocol of the test's own: what aiohttp or loop.sendfile may ask of it."""
    payload = os.urandom(3 << 20)
    data_file = tmp_path / "payload"
    data_file.write_bytes(payload)
    context = server_context(certs, client_auth=True)
    seen: dict[str, Any] = {}

    class Sender(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, TLSTransport)
            self.transport = transport
            for name in ("sslcontext", "ssl_object", "peercert", "cipher", "peername", "sockname", "socket"):
                seen[name] = transport.get_extra_info(name)
            transport.set_write_buffer_limits(high=64 << 10)
            seen["limits"] = transport.get_write_buffer_limits()
            seen["protocol"] = transport.get_protocol() is self
            self.sending = asyncio.ensure_future(self.send())

        async def send(self) -> None:
            loop = asyncio.get_running_loop()
            with data_file.open("rb") as f:
                seen["sent"] = await loop.sendfile(self.transport, f, fallback=True)
            seen["protocol_restored"] = self.transport.get_protocol() is self and self.transport.is_reading()
            self.transport.pause_reading()
            seen["paused"] = not self.transport.is_reading()
            self.transport.resume_reading()
            self.transport.close()
            seen["closing"] = self.transport.is_closing()

        def data_received(self, data: bytes) -> None:
            pass

        def connection_lost(self, exc: BaseException | None) -> None:
            seen["lost"] = True

    async def main() -> bytes:
        pool = HandshakePool()
        server = await asyncio.get_running_loop().create_server(
            lambda: TLSHandshake(Sender(), lambda: context, pool, timeout=10), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        try:
            # The client reads slowly (its reader pauses the server's writing through the socket buffers).
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(certs, "client"), server_hostname="localhost",
                limit=16 << 10,
            )  # fmt: skip
            received = bytearray()
            while chunk := await reader.read(16 << 10):
                received += chunk
            writer.close()
            return bytes(received)
        finally:
            server.close()
            pool.shutdown()

    assert asyncio.run(main()) == payload
    assert seen["sent"] == len(payload) and seen["protocol_restored"] and seen["paused"] and seen["closing"]
    assert isinstance(seen["sslcontext"], ssl.SSLContext) and isinstance(seen["ssl_object"], ssl.SSLObject)
    assert dict(item[0] for item in seen["peercert"]["subject"])["commonName"] == "prometheus"
    assert seen["cipher"][1].startswith("TLSv1.")
    assert seen["peername"][0] == "127.0.0.1" and seen["sockname"][0] == "127.0.0.1"
    assert seen["socket"] is not None and seen["limits"] == (16 << 10, 64 << 10) and seen["protocol"] and seen["lost"]


# -- the real daemon ------------------------------------------------------------------------------------


def test_the_real_daemon_serves_tls_to_curl_during_a_handshake_flood(
    certs: dict[str, CertPair], tmp_path: Path
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs['server'].cert}\n  key_file: {certs['server'].key}\n")
    config = write_config(tmp_path / "config.yaml", tmp_path / "rec")
    port = free_port()
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "recorder", "-c", str(config), "--listen-address", f"127.0.0.1:{port}",
             "--web.config.file", str(web)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"https://localhost:{port}/metrics"
    curl = ["curl", "-sS", "--max-time", "10", "--cacert", str(certs["ca"].cert),
            "--resolve", f"localhost:{port}:127.0.0.1"]  # fmt: skip

    def scraped() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{log_path.read_text()}")
        result = subprocess.run([*curl, "-o", "/dev/null", "-w", "%{http_code}", url],
                                capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
        return result.stdout == "200"

    hello = client_hello(client_context(certs))
    stalled: list[socket.socket] = []
    try:
        wait_for(scraped, timeout=30, what="the daemon to serve TLS")
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(hello)
            stalled.append(sock)
        # curl reuses its connection for several URLs in one run: keep-alive over the new transport.
        result = subprocess.run([*curl, "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n",
                                 url, url], capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        assert result.stdout.split("\n")[:2] == ["200 1", "200 0"], result
        metrics = subprocess.run([*curl, url], capture_output=True, text=True, timeout=20, check=True).stdout
        assert "camera_recorder_http_connections" in metrics or "camera_recorder_" in metrics
    finally:
        for sock in stalled:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()

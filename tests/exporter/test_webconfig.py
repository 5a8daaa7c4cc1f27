"""The exporter-toolkit web config: parsed once, one line per problem, TLS that follows renewals, cached bcrypt."""

from __future__ import annotations

import base64
import logging
import ssl
from pathlib import Path

import bcrypt
import pytest
from tls_certs import make_ca, make_cert

from exporter.ratelimit import RateLimitedLog
from exporter.routes.webhook import json_depth
from exporter.webconfig import (
    BasicAuthChecker,
    PlainPasswordUser,
    TLSContextSource,
    TLSServerConfig,
    WebConfig,
    check_telemetry_path,
    load_web_config,
    resolve_web_config,
)
from recorder.config import ConfigError, ExporterConfig, parse_config

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()  # cost 4: these tests check logic, not cost


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "web.yml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert info.value.source == str(path)
    # Every line the operator sees names the file.
    assert all(line.startswith(f"{path}: ") for line in str(info.value).splitlines())
    return info.value.problems


def test_a_full_file_becomes_frozen_objects_with_paths_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: /etc/key.pem\n  client_ca_file: ca.pem\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS13\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\nhttp_server_config:\n  http2: false\n"
    )
    web = load_web_config(path)
    assert web.tls == TLSServerConfig(
        tmp_path / "tls/server.pem", Path("/etc/key.pem"), tmp_path / "ca.pem", "RequireAndVerifyClientCert", "TLS13"
    )
    assert dict(web.basic_auth_users) == {"prometheus": HASH.encode()}
    with pytest.raises(AttributeError):
        web.tls = None  # type: ignore[misc]


def test_an_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("")
    web = load_web_config(path)
    assert web.tls is None and not web.basic_auth


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_server_config:\n  cert_file: a.pem\n", "tls_server_config: cert_file and key_file are both required"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}\n",
            "tls_server_config.client_auth_type: expected one of NoClientCert, VerifyClientCertIfGiven, "
            "RequireAndVerifyClientCert, got 'Sometimes'",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c,\n"
            "  client_auth_type: RequireAnyClientCert}\n",
            "tls_server_config.client_auth_type: 'RequireAnyClientCert' is not supported (client certificates are "
            "always verified); use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}\n",
            "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}\n",
            "tls_server_config.client_ca_file: set without a client_auth_type that verifies client certificates",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS1.2}\n",
            "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13, got 'TLS1.2'",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}\n",
            "tls_server_config.max_version: TLS12 is below min_version TLS13",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_AES_128_GCM_SHA256]}\n",
            "tls_server_config.cipher_suites: not supported by camera-recorder; remove it",
        ),
        (
            "tls_server_config: {cert_file: 7, key_file: b}\n",
            "tls_server_config.cert_file: expected a file path, got 7",
        ),
        (
            "basic_auth_users:\n  prometheus: s3cret\n",
            "basic_auth_users.prometheus: expected a bcrypt hash such as $2y$10$... (htpasswd -nBC 10 prometheus), "
            "got 's3cret'",
        ),
        ("basic_auth_users: [prometheus]\n", "basic_auth_users: expected a mapping of user name to bcrypt hash, got"),
        ("tls_config: {}\n", "'tls_config': unknown key (expected tls_server_config, basic_auth_users)"),
        ("http_server_config: {headers: {X-Frame-Options: deny}}\n", "http_server_config.'headers': not supported"),
        ("- just\n- a list\n", "expected a mapping with tls_server_config and/or basic_auth_users, got ['just',"),
        ("basic_auth_users: {a: &h x, b: *h}\n", "line 1: invalid YAML: aliases (*name) are not allowed here"),
        (
            f"basic_auth_users:\n  prometheus: '{HASH}'\n  prometheus: '{HASH}'\n",
            "line 3: invalid YAML: duplicate key 'prometheus' (first on line 2)",
        ),
        ("tls_server_config: [\n", "line 2: invalid YAML: expected the node content"),
    ],
)
def test_each_problem_is_one_line_naming_the_key_and_the_value(tmp_path: Path, text: str, expected: str) -> None:
    problems = _problems(tmp_path, text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems[0]


def test_a_long_value_is_cut_in_the_message(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, f"basic_auth_users:\n  prometheus: '{'x' * 100_000}'\n")
    assert len(problem) < 200 and problem.endswith("...")


def test_every_problem_of_a_file_at_once(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path, "tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}\nbasic_auth_users: {u: plain}\n"
    )
    assert [p.split(":")[0] for p in problems] == ["tls_server_config.min_version", "basic_auth_users.u"]


def test_unreadable_and_non_utf8_files_are_one_line(tmp_path: Path) -> None:
    assert _problems(tmp_path, b"basic_auth_users:\n  caf\xe9: x\n") == ["not UTF-8 text (byte 23)"]
    with pytest.raises(ConfigError) as info:
        load_web_config(tmp_path / "missing.yml")
    assert info.value.problems == ["cannot read web config: No such file or directory"]


def test_deprecated_keys_are_aliases_with_a_warning_and_cannot_be_mixed_with_the_file(tmp_path: Path) -> None:
    raw = {
        "cameras": {"cam1": {"test_pattern": True}},
        "exporter": {"basic_auth_username": "prometheus", "basic_auth_password_file": "/etc/pw"},
    }
    config = parse_config(raw)
    assert config.warnings == (
        "exporter.basic_auth_username/basic_auth_password_file: deprecated; use --web.config.file "
        "(exporter-toolkit format)",
    )
    web = resolve_web_config(config.exporter, None)
    assert web.plain_password_user == PlainPasswordUser("prometheus", Path("/etc/pw"))
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users: {{prometheus: '{HASH}'}}\n")
    with pytest.raises(ConfigError, match="move them into the web config file"):
        resolve_web_config(config.exporter, path)
    assert resolve_web_config(ExporterConfig(), path).basic_auth_users == {"prometheus": HASH.encode()}


@pytest.mark.parametrize("path", ["metrics", "/", "/-/healthy", "/metrics?x=1", "/with space"])
def test_a_telemetry_path_that_cannot_serve_is_refused(path: str) -> None:
    with pytest.raises(ConfigError, match=r"--web\.telemetry-path"):
        check_telemetry_path(path, ("/", "/-/healthy"))


# -- basic auth -------------------------------------------------------------------------------------------


def test_bcrypt_credentials_are_checked_once_then_served_from_the_cache() -> None:
    checker = BasicAuthChecker(WebConfig(basic_auth_users={"prometheus": HASH.encode(), "grafana": HASH.encode()}))
    assert all(checker.check(_basic("prometheus", "s3cret")) for _ in range(50))
    assert checker.bcrypt_checks == 1
    assert not checker.check(_basic("prometheus", "wrong"))
    assert not checker.check(_basic("prometheus", "wrong"))
    assert checker.bcrypt_checks == 2  # a refusal is remembered too: a replayed guess costs no bcrypt
    assert checker.check(_basic("grafana", "s3cret"))  # same hash, other user: a cache entry of its own
    assert checker.bcrypt_checks == 3


def test_guesses_never_push_verified_credentials_out_of_the_cache() -> None:
    checker = BasicAuthChecker(WebConfig(basic_auth_users={"prometheus": HASH.encode()}), cache_size=4)
    good = _basic("prometheus", "s3cret")
    assert checker.needs_bcrypt(good)
    assert checker.check(good) and not checker.needs_bcrypt(good)
    for guess in range(20):  # more distinct wrong passwords than either cache holds
        assert not checker.check(_basic("prometheus", f"guess{guess}"))
    assert not checker.needs_bcrypt(good)  # still verified: its scrapes stay off the bcrypt pool
    assert not checker.needs_bcrypt(_basic("prometheus", "guess19"))  # a replayed guess is refused from cache
    assert not checker.needs_bcrypt("Bearer x")  # nothing to check: refused at once
    checks = checker.bcrypt_checks
    assert checker.check(good) and checker.bcrypt_checks == checks


def test_unknown_users_and_malformed_headers_are_refused() -> None:
    checker = BasicAuthChecker(WebConfig(basic_auth_users={"prometheus": HASH.encode()}))
    assert not checker.check(_basic("nobody", "s3cret"))
    assert checker.bcrypt_checks == 1  # checked against a real hash anyway: the same time as a known user
    for header in ("", "Bearer s3cret", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                   "Basic " + base64.b64encode(b"\xff:\xfe").decode(), _basic("prometheus", "x" * 100)):  # fmt: skip
        assert not checker.check(header), header
    assert checker.check("basic " + _basic("prometheus", "s3cret")[6:])  # the scheme is case-insensitive


def test_non_ascii_users_and_passwords_work() -> None:
    hashed = bcrypt.hashpw("sécret".encode(), bcrypt.gensalt(4))
    checker = BasicAuthChecker(WebConfig(basic_auth_users={"prométheus": hashed}))
    assert checker.check(_basic("prométheus", "sécret"))
    assert not checker.check(_basic("prometheus", "sécret"))


def test_the_plain_password_file_is_read_per_request(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("one\n")
    checker = BasicAuthChecker(WebConfig(plain_password_user=PlainPasswordUser("prometheus", password)))
    assert checker.check(_basic("prometheus", "one"))
    password.write_text("two\n")
    assert not checker.check(_basic("prometheus", "one"))
    assert checker.check(_basic("prometheus", "two"))


# -- TLS -----------------------------------------------------------------------------------------------------


def test_renewed_certificates_are_used_and_a_broken_renewal_keeps_the_old_one(tmp_path: Path) -> None:
    pair = make_cert(tmp_path, "server")
    now = [0.0]
    source = TLSContextSource(TLSServerConfig(pair.cert, pair.key), check_interval=1.0, clock=lambda: now[0])
    first = source.context()
    renewed = make_cert(tmp_path, "renewed", cn="renewed")
    pair.cert.write_bytes(renewed.cert.read_bytes())
    pair.key.write_bytes(renewed.key.read_bytes())
    assert source.context() is first  # looked at again only after check_interval
    now[0] = 1.5
    second = source.context()
    assert second is not first and source.reloads == 1
    pair.key.write_text("half-written\n")
    now[0] = 3.0
    assert source.context() is second  # a broken pair never replaces a working one
    assert source.reloads == 1


def test_a_bad_certificate_is_one_line_naming_the_keys(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError) as info:
        TLSContextSource(TLSServerConfig(tmp_path / "cert.pem", tmp_path / "key.pem"), source="web.yml")
    assert str(info.value).startswith("web.yml: tls_server_config.cert_file/key_file: cannot load ")


def test_client_certificate_policies_map_to_verify_modes(tmp_path: Path) -> None:
    ca, server = make_ca(tmp_path), make_cert(tmp_path, "server")
    for policy, mode in [
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ]:
        context = TLSContextSource(TLSServerConfig(server.cert, server.key, ca.cert, policy, "TLS13")).context()
        assert context.verify_mode == mode and context.minimum_version == ssl.TLSVersion.TLSv1_3


# -- small pieces -----------------------------------------------------------------------------------------------


def test_rate_limited_log_says_how_many_lines_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("test.ratelimit"), interval=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.ratelimit"):
        results = [limited.log(logging.WARNING, "auth", "failed from %s", "10.0.0.1") for _ in range(5)]
        now[0] = 59.0
        assert not limited.log(logging.WARNING, "auth", "failed from %s", "10.0.0.1")
        assert limited.log(logging.WARNING, "other", "another key is not held back")
        now[0] = 61.0
        assert limited.log(logging.WARNING, "auth", "failed from %s", "10.0.0.2")
    assert results == [True, False, False, False, False]
    assert [r.getMessage() for r in caplog.records] == [
        "failed from 10.0.0.1",
        "another key is not held back",
        "failed from 10.0.0.2 (5 more like this since the last such line)",
    ]


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"", 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[[[[[[", "b": "\\"[[["}', 1),
        (b"[" * 5000, 5000),
        (b'["\\\\", ["\\\\\\"]"]]', 2),  # an escaped backslash ends before the closing quote
        (b'[["unterminated \\" [[[[', 2),  # an unterminated string's brackets are not counted
        (b'"\\' * 4096, 0),
    ],
)
def test_json_depth_is_counted_without_parsing(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth

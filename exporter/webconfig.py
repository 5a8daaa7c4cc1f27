"""The exporter-toolkit web configuration (`--web.config.file`): TLS and basic auth, read in one place.

The file has the shape node_exporter and Prometheus read (https://prometheus.io/docs/prometheus/latest/
configuration/https/): `tls_server_config` and `basic_auth_users` (user -> bcrypt hash). It is parsed once
into frozen dataclasses; every problem is one line naming the file, the key and the value. The old
`exporter.tls_*` / `exporter.basic_auth_*` keys of the main config become the same objects (they are
deprecated aliases; recorder/config/ warns about them).

At run time, `TLSContextSource` hands out an SSL context that follows certificate renewals, and
`BasicAuthChecker` checks credentials in constant time with a cache, since bcrypt costs ~50 ms a check.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import bcrypt
import yaml

from recorder.config import ConfigError, ExporterConfig

log = logging.getLogger(__name__)

# exporter-toolkit's names for Go's tls.ClientAuthType. Python's ssl module verifies every client certificate
# it asks for, so the two "request but do not verify" policies have no equivalent and are refused.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = MappingProxyType(
    {
        "NoClientCert": ssl.CERT_NONE,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }
)
UNSUPPORTED_CLIENT_AUTH_TYPES = ("RequestClientCert", "RequireAnyClientCert")
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = MappingProxyType(
    {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
)
DEFAULT_MIN_VERSION = "TLS12"  # exporter-toolkit's default too
# $2a$, $2b$ or $2y$, a two-digit cost, 22 characters of salt and 31 of hash.
BCRYPT_HASH_RE = re.compile(r"^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$")
# A shown value is cut here: a wrong value may be a whole certificate pasted in by mistake.
SHOW_MAX = 80
# How often the certificate files are looked at (one stat each) for a renewal.
CERT_CHECK_INTERVAL = 1.0
# Verified (user, password, hash) triples remembered, so that a scrape costs a hash lookup, not a bcrypt.
AUTH_CACHE_SIZE = 256
# Refused triples remembered apart, so that a replayed guess costs no bcrypt either; apart, because a flood of
# distinct wrong passwords would otherwise push the good credentials out and send their scrapes to bcrypt.
AUTH_REFUSED_CACHE_SIZE = 256
_TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version")
# Keys of the toolkit's format that this implementation does not honour: refused rather than ignored, since
# each of them narrows who may connect and silently dropping one would weaken the operator's intent.
_TLS_UNSUPPORTED = ("cert", "key", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
                    "client_allowed_sans")  # fmt: skip


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = DEFAULT_MIN_VERSION
    max_version: str | None = None

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p is not None)


@dataclass(frozen=True)
class PlainPasswordUser:
    """The deprecated `exporter.basic_auth_*` pair: one user whose password is read from a file per request."""

    username: str
    password_file: Path


@dataclass(frozen=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    # user name -> bcrypt hash (as bytes, the form bcrypt.checkpw takes)
    basic_auth_users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    plain_password_user: PlainPasswordUser | None = None
    source: str | None = None

    @property
    def basic_auth(self) -> bool:
        return bool(self.basic_auth_users) or self.plain_password_user is not None


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= SHOW_MAX else text[: SHOW_MAX - 3] + "..."


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases (no expansion bombs) and without duplicate keys (no silently shadowed users)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)} (first on line {seen[key] + 1})", key_node.start_mark
                )
            if isinstance(key, str):
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_web_config(path: Path) -> WebConfig:
    """Read and validate an exporter-toolkit web config file; ConfigError lists every problem, one a line."""
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text (byte {exc.start})"], source) from None
    except OSError as exc:
        raise ConfigError([f"cannot read web config: {exc.strerror or exc}"], source) from None
    try:
        raw = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}invalid YAML: {getattr(exc, 'problem', None) or exc}"], source) from None
    return parse_web_config(raw, source=source, base_dir=path.parent)


def parse_web_config(raw: Any, source: str | None = None, base_dir: Path | None = None) -> WebConfig:
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        expected = "expected a mapping with tls_server_config and/or basic_auth_users"
        raise ConfigError([f"{expected}, got {_show(raw)}"], source)
    for key in raw:
        if key not in ("tls_server_config", "basic_auth_users", "http_server_config"):
            problems.append(f"{_show(key)}: unknown key (expected tls_server_config, basic_auth_users)")
    tls = _tls(raw.get("tls_server_config"), problems, base_dir)
    users = _users(raw.get("basic_auth_users"), problems)
    _http_server(raw.get("http_server_config"), problems)
    if problems:
        raise ConfigError(problems, source)
    return WebConfig(tls=tls, basic_auth_users=MappingProxyType(users), source=source)


def _path(value: Any, key: str, problems: list[str], base_dir: Path | None) -> Path | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{key}: expected a file path, got {_show(value)}")
        return None
    path = Path(value)
    # As exporter-toolkit does: relative paths are relative to the web config file.
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _tls(raw: Any, problems: list[str], base_dir: Path | None) -> TLSServerConfig | None:
    if raw is None:
        return None
    where = "tls_server_config"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping, got {_show(raw)}")
        return None
    for key in raw:
        if key in _TLS_UNSUPPORTED:
            problems.append(f"{where}.{key}: not supported by camera-recorder; remove it")
        elif key not in _TLS_KEYS:
            problems.append(f"{where}.{_show(key)}: unknown key (expected one of {', '.join(_TLS_KEYS)})")
    if "cert_file" not in raw or "key_file" not in raw:
        problems.append(f"{where}: cert_file and key_file are both required")
        return None
    cert = _path(raw["cert_file"], f"{where}.cert_file", problems, base_dir)
    key = _path(raw["key_file"], f"{where}.key_file", problems, base_dir)
    ca = None
    if raw.get("client_ca_file") is not None:
        ca = _path(raw["client_ca_file"], f"{where}.client_ca_file", problems, base_dir)
    auth = raw.get("client_auth_type") or "NoClientCert"
    if auth in UNSUPPORTED_CLIENT_AUTH_TYPES:
        problems.append(
            f"{where}.client_auth_type: {auth!r} is not supported (client certificates are always verified); "
            "use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    elif auth not in CLIENT_AUTH_TYPES:
        problems.append(f"{where}.client_auth_type: expected one of {', '.join(CLIENT_AUTH_TYPES)}, got {_show(auth)}")
    elif auth != "NoClientCert" and ca is None and "client_ca_file" not in raw:
        problems.append(f"{where}.client_auth_type: {auth} needs client_ca_file")
    elif auth == "NoClientCert" and ca is not None:
        # exporter-toolkit refuses this too: a CA without a policy would check nobody.
        problems.append(f"{where}.client_ca_file: set without a client_auth_type that verifies client certificates")
    versions: dict[str, str | None] = {}
    for name, default in (("min_version", DEFAULT_MIN_VERSION), ("max_version", None)):
        value = raw.get(name, default)
        if value is not None and value not in TLS_VERSIONS:
            problems.append(f"{where}.{name}: expected one of {', '.join(TLS_VERSIONS)}, got {_show(value)}")
            value = default
        versions[name] = value
    min_v, max_v = versions["min_version"] or DEFAULT_MIN_VERSION, versions["max_version"]
    if max_v is not None and TLS_VERSIONS[max_v] < TLS_VERSIONS[min_v]:
        problems.append(f"{where}.max_version: {max_v} is below min_version {min_v}")
    if cert is None or key is None:
        return None
    return TLSServerConfig(cert, key, ca, auth if auth in CLIENT_AUTH_TYPES else "NoClientCert", min_v, max_v)


def _users(raw: Any, problems: list[str]) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"basic_auth_users: expected a mapping of user name to bcrypt hash, got {_show(raw)}")
        return {}
    users = {}
    for name, hashed in raw.items():
        if not isinstance(name, str) or not name or ":" in name:
            problems.append(f"basic_auth_users: {_show(name)}: a user name is a non-empty string without ':'")
            continue
        if not isinstance(hashed, str) or not BCRYPT_HASH_RE.match(hashed):
            problems.append(
                f"basic_auth_users.{name}: expected a bcrypt hash such as $2y$10$... "
                f"(htpasswd -nBC 10 {name}), got {_show(hashed)}"
            )
            continue
        users[name] = hashed.encode("ascii")
    return users


def _http_server(raw: Any, problems: list[str]) -> None:
    # Accepted for files shared with node_exporter: HTTP/2 is never spoken here, so `http2` changes nothing.
    if raw is None:
        return
    if not isinstance(raw, dict):
        problems.append(f"http_server_config: expected a mapping, got {_show(raw)}")
        return
    for key in raw:
        if key != "http2":
            problems.append(f"http_server_config.{_show(key)}: not supported by camera-recorder; remove it")


def from_exporter_config(config: ExporterConfig) -> WebConfig:
    """The deprecated exporter.tls_* / exporter.basic_auth_* keys as a WebConfig."""
    tls = None
    if config.tls_cert_file is not None and config.tls_key_file is not None:
        tls = TLSServerConfig(config.tls_cert_file, config.tls_key_file)
    user = None
    if config.basic_auth_username is not None and config.basic_auth_password_file is not None:
        user = PlainPasswordUser(config.basic_auth_username, config.basic_auth_password_file)
    return WebConfig(tls=tls, plain_password_user=user, source=None)


def resolve_web_config(config: ExporterConfig, web_config_file: Path | None) -> WebConfig:
    """The web config in force: --web.config.file, or the deprecated keys; both at once is an error."""
    legacy = from_exporter_config(config)
    if web_config_file is None:
        return legacy
    if legacy.tls is not None or legacy.plain_password_user is not None:
        raise ConfigError(
            [
                "exporter.tls_*/basic_auth_* and --web.config.file both configure TLS or basic auth; "
                "move them into the web config file and remove the exporter keys"
            ]
        )
    return load_web_config(web_config_file)


# -- the --web.* flags ---------------------------------------------------------------------------------

DEFAULT_TELEMETRY_PATH = "/metrics"


@dataclass(frozen=True)
class WebOptions:
    """The --web.* flags beside the listen address, as node_exporter names them."""

    config_file: Path | None = None
    telemetry_path: str = DEFAULT_TELEMETRY_PATH
    disable_exporter_metrics: bool = False  # drop process_* and python_* families


def check_telemetry_path(path: str, taken: tuple[str, ...]) -> str:
    """`path` if it can serve metrics, else ConfigError naming the flag."""
    if not path.startswith("/") or any(c.isspace() or c in "?#" for c in path) or len(path) > 256:
        raise ConfigError([f"--web.telemetry-path: expected a path such as /metrics, got {_show(path)}"])
    if path in taken:
        raise ConfigError([f"--web.telemetry-path: {path} is taken by another endpoint ({', '.join(taken)})"])
    return path


# -- TLS -----------------------------------------------------------------------------------------------


def build_ssl_context(tls: TLSServerConfig, source: str | None = None) -> ssl.SSLContext:
    """A server context for `tls`, or ConfigError naming the file that could not be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version is not None:
        context.maximum_version = TLS_VERSIONS[tls.max_version]
    # `source` is the web config file; None for the deprecated exporter.tls_* keys of the main config.
    pair = "tls_server_config.cert_file/key_file" if source else "exporter.tls_cert_file/tls_key_file"
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        problem = f"{pair}: cannot load {tls.cert_file} with {tls.key_file}: {_reason(exc)}"
        raise ConfigError([problem], source) from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [f"tls_server_config.client_ca_file: cannot load {tls.client_ca_file}: {_reason(exc)}"], source
            ) from None
    return context


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _signature(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class TLSContextSource:
    """The SSL context for new connections; certificate files are reloaded when they change on disk.

    A renewal (certbot, cert-manager) writes new files in place or swaps a link: at most once per
    `check_interval` the files are stat'ed, and on a change a new context is built. A half-written or
    broken pair keeps the previous context in service and is logged once per change.
    """

    def __init__(
        self,
        tls: TLSServerConfig,
        source: str | None = None,
        check_interval: float = CERT_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tls = tls
        self._source = source
        self._check_interval = check_interval
        self._clock = clock
        self._signature = _signature(tls.files)
        self._context = build_ssl_context(tls, source)
        self._checked_at = clock()
        self._failed_signature: tuple[Any, ...] | None = None
        self.reloads = 0

    def context(self) -> ssl.SSLContext:
        now = self._clock()
        if now - self._checked_at >= self._check_interval:
            self._checked_at = now
            signature = _signature(self._tls.files)
            if signature != self._signature and signature != self._failed_signature:
                try:
                    self._context = build_ssl_context(self._tls, self._source)
                except ConfigError as exc:
                    self._failed_signature = signature
                    log.error("TLS certificate changed but cannot be used, keeping the previous one: %s", exc)
                else:
                    self._signature = signature
                    self._failed_signature = None
                    self.reloads += 1
                    log.info("TLS certificate reloaded from %s", self._tls.cert_file)
        return self._context


# -- basic auth ----------------------------------------------------------------------------------------


def parse_basic_authorization(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic ...` header, or None when it is not one."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class BasicAuthChecker:
    """Checks basic-auth credentials against bcrypt hashes (or the deprecated plain password file).

    bcrypt is slow by design (~50 ms at cost 10): a verified answer is cached under a keyed digest of
    (user, hash, password), so a scraper that sends the same credentials every 15 s pays bcrypt once, and
    the cache never holds a password or a plain hash of one. Misses are serialised, so a guessing client
    burns at most one core's worth of bcrypt. `known()` answers from the caches alone, so that the server
    can send the requests that need bcrypt to a pool of their own (with a bounded queue) and scrapes with
    cached credentials never wait behind them. Verified and refused credentials are cached apart: guesses
    never evict good credentials.
    """

    def __init__(self, web: WebConfig, cache_size: int = AUTH_CACHE_SIZE) -> None:
        self._users = dict(web.basic_auth_users)
        self._plain = web.plain_password_user
        # An unknown user is checked against a real hash anyway, so the answer takes as long either way.
        self._decoy = next(iter(self._users.values()), None)
        self._verified: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._refused: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self.bcrypt_checks = 0  # for tests and the benchmark: how often the slow path ran

    @property
    def enabled(self) -> bool:
        return bool(self._users) or self._plain is not None

    def check(self, authorization: str) -> bool:
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return False
        user, password = credentials
        if self._plain is not None:
            return self._check_plain(user, password)
        return self._check_bcrypt(user, password)

    def verified(self, authorization: str) -> bool:
        """Whether these credentials are known good without running bcrypt (the verified cache, or the plain
        password file): what the server asks before it spends any body budget on a request."""
        credentials = parse_basic_authorization(authorization)
        if credentials is None:
            return False
        if self._plain is not None:
            return self._check_plain(*credentials)
        key = self._cache_key(*credentials)
        if key is None or not key[1]:
            return False
        with self._cache_lock:
            return key[2] in self._verified

    def needs_bcrypt(self, authorization: str) -> bool:
        """Whether check() would run bcrypt (not in either cache): cheap, one keyed hash. Such a request
        belongs in a pool apart, where it cannot hold up requests whose credentials are known."""
        credentials = parse_basic_authorization(authorization)
        if credentials is None or self._plain is not None:
            return False
        key = self._cache_key(*credentials)
        if key is None:
            return False
        with self._cache_lock:
            return key[2] not in self._verified and key[2] not in self._refused

    def _cache_key(self, user: str, password: str) -> tuple[bytes, bool, bytes] | None:
        """(the hash checked against, whether the user is known, the cache key); None when no hash exists."""
        hashed = self._users.get(user)
        known = hashed is not None
        if hashed is None:
            hashed = self._decoy
        if hashed is None:
            return None
        secret = password.encode("utf-8")
        digest = hmac.new(self._key, b"\0".join((user.encode("utf-8"), hashed, secret)), hashlib.sha256).digest()
        return hashed, known, digest

    def _check_plain(self, user: str, password: str) -> bool:
        assert self._plain is not None
        try:
            # Read per request, so a rotated password applies without a restart.
            expected = self._plain.password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return False
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a user name may have them.
        user_ok = hmac.compare_digest(user.encode(), self._plain.username.encode())
        return user_ok & hmac.compare_digest(password.encode(), expected.encode())

    def _check_bcrypt(self, user: str, password: str) -> bool:
        key = self._cache_key(user, password)
        if key is None:
            return False
        hashed, known, digest = key
        secret = password.encode("utf-8")
        with self._cache_lock:
            for cache, verdict in ((self._verified, True), (self._refused, False)):
                if digest in cache:
                    cache.move_to_end(digest)
                    return verdict and known
        with self._bcrypt_lock:
            self.bcrypt_checks += 1
            # bcrypt hashes at most 72 bytes (bcrypt>=5 raises on more): a longer password never matches.
            ok = len(secret) <= 72 and bcrypt.checkpw(secret, hashed)
        with self._cache_lock:
            cache, size = (self._verified, self._cache_size) if ok else (self._refused, AUTH_REFUSED_CACHE_SIZE)
            cache[digest] = None
            if len(cache) > size:
                cache.popitem(last=False)
        return ok and known

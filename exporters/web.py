"""HTTP serving: /metrics, /-/healthy and a landing page, with exporter-toolkit-style TLS and basic auth."""

from __future__ import annotations

import base64
import gzip
import hashlib
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import bcrypt
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .settings import SettingError, read_yaml_file

log = logging.getLogger(__name__)

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


@dataclass
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)


def load_web_config(path: str | None) -> WebConfig:
    """Parse a Prometheus exporter-toolkit web config file; raise SettingError naming the problem."""
    if not path:
        return WebConfig()
    where = "--web-config"
    data = read_yaml_file(path, where)
    if data is None:
        return WebConfig()
    if not isinstance(data, dict):
        raise SettingError(f"{where}: {path} must hold a YAML mapping")
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise SettingError(f"{where}: unknown key {sorted(unknown)[0]!r} in {path}")

    config = WebConfig()
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise SettingError(f"{where}: basic_auth_users must map user names to bcrypt hashes")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise SettingError(f"{where}: basic_auth_users.{user} must be a bcrypt hash")
        config.users[str(user)] = hashed.encode()

    tls = data.get("tls_server_config")
    if tls:
        config.ssl_context = _ssl_context(tls, where)
    return config


def _ssl_context(tls: Any, where: str) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise SettingError(f"{where}: tls_server_config must be a mapping")
    known = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version",
             "cipher_suites", "prefer_server_cipher_suites", "curve_preferences", "cert", "key"}
    unknown = set(tls) - known
    if unknown:
        raise SettingError(f"{where}: unknown key tls_server_config.{sorted(unknown)[0]}")
    for key in ("cert_file", "key_file"):
        if not tls.get(key):
            raise SettingError(f"{where}: tls_server_config.{key} is required")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls["cert_file"], tls["key_file"])
    except (OSError, ssl.SSLError) as exc:
        raise SettingError(f"{where}: cannot load tls_server_config.cert_file/key_file: {_reason(exc)}") from None
    for key, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in tls:
            if tls[key] not in _TLS_VERSIONS:
                raise SettingError(f"{where}: tls_server_config.{key} must be one of {', '.join(_TLS_VERSIONS)}")
            setattr(ctx, attr, _TLS_VERSIONS[tls[key]])
    auth_type = tls.get("client_auth_type", "NoClientCert")
    if auth_type not in _CLIENT_AUTH:
        raise SettingError(f"{where}: tls_server_config.client_auth_type must be one of {', '.join(_CLIENT_AUTH)}")
    ctx.verify_mode = _CLIENT_AUTH[auth_type]
    if tls.get("client_ca_file"):
        try:
            ctx.load_verify_locations(tls["client_ca_file"])
        except (OSError, ssl.SSLError) as exc:
            raise SettingError(f"{where}: cannot load tls_server_config.client_ca_file: {_reason(exc)}") from None
    elif ctx.verify_mode != ssl.CERT_NONE and auth_type != "RequireAnyClientCert":
        raise SettingError(f"{where}: client_auth_type {auth_type} needs tls_server_config.client_ca_file")
    return ctx


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


class _Auth:
    """bcrypt is deliberately slow; like exporter-toolkit, cache the outcome per credential."""

    def __init__(self, users: dict[str, bytes]):
        self.users = users
        self._cache: dict[bytes, bool] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed])).digest()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = bcrypt.checkpw(password.encode(), hashed)
            with self._lock:
                self._cache[key] = cached
        return cached


LANDING = """<!DOCTYPE html>
<html><head><title>MLScope {title}</title></head>
<body><h1>MLScope {title}</h1><p>{version}</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li></ul>
</body></html>
"""


class _One:
    """A single collector in the shape prometheus_client's encoders expect of a registry."""

    def __init__(self, collector: Collector):
        self.collector = collector

    def collect(self):
        return self.collector.collect()


class Exposition:
    """Encodes the collectors' output, reusing the bytes of collectors whose data has not changed.

    A collector that serves a cache (e.g. the SageMaker pollers' snapshot) defines `cache_key()`;
    its encoded text, and its gzip member, are rebuilt only when that key changes. Everything else
    is encoded on every scrape. Gzip members may be concatenated (RFC 1952), so the cached member
    and a fresh one for the rest form one valid body.
    """

    def __init__(self, collectors: list[Collector]):
        self.collectors = collectors
        self._cache: dict[tuple[int, str], tuple[object, bytes, bytes | None]] = {}
        self._lock = threading.Lock()

    def render(self, accept: str, compress: bool) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        eof = b"# EOF\n" if content_type.startswith("application/openmetrics-text") else b""
        members: list[bytes] = []
        fresh: list[bytes] = []
        for collector in self.collectors:
            cache_key = getattr(collector, "cache_key", None)
            if cache_key is None:
                fresh.append(self._encode(encoder, collector, eof))
                continue
            key, version = (id(collector), content_type), cache_key()
            with self._lock:
                hit = self._cache.get(key)
            if hit is None or hit[0] != version:
                hit = (version, self._encode(encoder, collector, eof), None)
            if compress and hit[2] is None:
                hit = (version, hit[1], gzip.compress(hit[1], compresslevel=1))
            with self._lock:
                self._cache[key] = hit
            if compress:
                if fresh:
                    members.append(gzip.compress(b"".join(fresh), compresslevel=1))
                    fresh = []
                members.append(hit[2])
            else:
                fresh.append(hit[1])
        fresh.append(eof)
        if not compress:
            return b"".join(fresh), content_type
        members.append(gzip.compress(b"".join(fresh), compresslevel=1))
        return b"".join(members), content_type

    @staticmethod
    def _encode(encoder, collector: Collector, eof: bytes) -> bytes:
        text = encoder(_One(collector))
        return text[: -len(eof)] if eof and text.endswith(eof) else text


class _Handler(BaseHTTPRequestHandler):
    server: "MetricsServer"
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: with Nagle on, a keep-alive scrape waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv = self.server
        if not srv.auth.check(self.headers.get("Authorization")):
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Basic realm="MLScope"'})
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            compress = "gzip" in self.headers.get("Accept-Encoding", "")
            body, content_type = srv.exposition.render(self.headers.get("Accept", ""), compress)
            self._send(200, body, content_type, {"Content-Encoding": "gzip"} if compress else None)
        elif path == "/-/healthy":
            self._send(200, b"Healthy\n", "text/plain; charset=utf-8")
        elif path == "/":
            self._send(200, srv.landing, "text/html; charset=utf-8")
        else:
            self._send(404, b"Not Found\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], collectors: list[Collector], web: WebConfig, title: str,
                 version: str):
        self.exposition = Exposition(collectors)
        self.ssl_context = web.ssl_context
        self.auth = _Auth(web.users)
        self.landing = LANDING.format(title=title, version=version).encode()
        host = address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__(address, _Handler)
        except OSError as exc:
            raise SettingError(f"--listen: cannot listen on {host}:{address[1]}: {exc.strerror or exc}") from None

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The TLS handshake runs in the request's own thread, so one slow client cannot stall accept().
        if self.ssl_context is not None:
            try:
                request.settimeout(10)
                if request.recv(1, socket.MSG_PEEK) != b"\x16":  # not a TLS handshake record
                    request.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
                                    b"Client sent an HTTP request to an HTTPS server.\n")
                    return
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error serving %s", client_address, exc_info=True)

"""HTTP serving: /metrics, /-/healthy and a landing page, with exporter-toolkit-style TLS and basic auth."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import logging
import re
import resource
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import bcrypt
from .textformat import choose_encoder
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
    """Basic auth as exporter-toolkit does it.

    Every rejection of a credential costs one bcrypt check, whether the user exists or not (an unknown
    user is checked against a dummy hash of the same cost), so timing does not tell which users exist.
    Only successful credentials are cached, in a bounded LRU: wrong passwords cannot grow it.
    """

    CACHE_SIZE = 100
    MAX_PASSWORD_BYTES = 72  # bcrypt's limit; longer passwords are refused, never truncated

    def __init__(self, users: dict[str, bytes]):
        self.users = users
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self._dummy = b""
        if users:
            cost = max(int(hashed.split(b"$")[2]) for hashed in users.values())
            self._dummy = bcrypt.hashpw(b"mlscope-dummy-password", bcrypt.gensalt(rounds=cost))

    def _credential(self, header: str | None) -> tuple[bytes, bytes | None, bytes] | None:
        """(password, the user's hash or None, cache key) from a Basic Authorization header."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).partition(b":")
        except ValueError:
            return None
        if not sep:
            return None
        hashed = self.users.get(user.decode("utf-8", "replace"))
        return password, hashed, hashlib.sha256(b"\0".join([user, password, hashed or b""])).digest()

    def _cached(self, key: bytes) -> bool:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        return False

    def needs_bcrypt(self, header: str | None) -> bool:
        """Whether checking this header costs a bcrypt check (cheap: no bcrypt is run here)."""
        credential = self.users and self._credential(header)
        return bool(credential) and not (credential[1] is not None and self._cached(credential[2]))

    def check(self, header: str | None) -> bool:
        if not self.users:
            return True
        credential = self._credential(header)
        if credential is None:
            return False
        password, hashed, key = credential
        if hashed is not None and self._cached(key):
            return True
        if hashed is None or len(password) > self.MAX_PASSWORD_BYTES:
            bcrypt.checkpw(b"mlscope-wrong-password", self._dummy)
            return False
        if not bcrypt.checkpw(password, hashed):
            return False
        with self._lock:
            self._cache[key] = None
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return True


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
    """Answers one fully received request; the event loop does all socket I/O.

    `request` is the request's header bytes; the reply is left in `wfile` for the loop to send.
    """

    server: "MetricsServer"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.rfile = io.BytesIO(self.request)
        self.wfile = io.BytesIO()

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        headers = getattr(self, "headers", None)
        if headers is not None and (headers.get("Content-Length", "0").strip() != "0"
                                    or "Transfer-Encoding" in headers):
            self.close_connection = True  # a body we never read: the next bytes are not a request

    def finish(self) -> None:
        pass

    def version_string(self) -> str:
        return "MLScope"  # no version numbers for scanners

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

    do_HEAD = do_GET  # noqa: N815 (_send leaves the body out)

    def _send(self, code: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)


_PEEK, _HANDSHAKE, _READ, _BUSY, _WRITE = "peek", "handshake", "read", "busy", "write"
_WAITS = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)
_REQUEST_END = re.compile(rb"\r?\n\r?\n")
_AUTHORIZATION = re.compile(rb"^authorization:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_BUSY_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
               b"Connection: close\r\n\r\nToo many connections\n")
_NOT_TLS_REPLY = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                  b"Client sent an HTTP request to an HTTPS server.\n")
_TOO_LARGE_REPLY = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n")


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    addr: Any
    state: str
    deadline: float
    inbuf: bytes = b""
    outbuf: memoryview = memoryview(b"")
    close_after: bool = False

    @property
    def fd(self) -> int:
        return self.sock.fileno()


class MetricsServer:
    """An HTTP/1.1 server that idle or hostile clients cannot exhaust.

    One event-loop thread does every socket operation without blocking: accept, the TLS handshake,
    reading requests and writing replies. A complete request goes to a small fixed pool of worker
    threads, which only compute the reply. So a thousand idle keep-alive connections cost a thousand
    file descriptors and no threads, a client that trickles its request (slowloris) or never reads its
    reply ties up nothing, and every connection has a deadline: `read_timeout` to send a request's
    headers (and the TLS handshake) or take a reply, `idle_timeout` between keep-alive requests.
    At `max_connections`, a new connection closes the one that has waited longest for a request, so a
    scrape always gets in; only when every connection is being served does it get a quick 503.
    """

    WORKERS = 4
    BCRYPT_WORKERS = 2
    MAX_HEADER_BYTES = 64 * 1024

    def __init__(self, address: tuple[str, int], collectors: list[Collector], web: WebConfig, title: str,
                 version: str, *, read_timeout: float = 10.0, idle_timeout: float = 120.0,
                 max_connections: int = 512):
        self.exposition = Exposition(collectors)
        self.ssl_context = web.ssl_context
        self.auth = _Auth(web.users)
        self.landing = LANDING.format(title=title, version=version).encode()
        self.read_timeout, self.idle_timeout = read_timeout, idle_timeout
        self.max_connections = min(max_connections, _usable_fds())
        host = address[0]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(1024)
        except OSError as exc:
            self.socket.close()
            raise SettingError(f"--listen: cannot listen on {host}:{address[1]}: {exc.strerror or exc}") from None
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: dict[int, _Conn] = {}
        self._waiting: OrderedDict[int, _Conn] = OrderedDict()  # waiting for a request, oldest first
        self._done: deque[tuple[_Conn, bytes, bool]] = deque()
        self._workers = ThreadPoolExecutor(self.WORKERS, thread_name_prefix="mlscope-http")
        self._bcrypt_workers = ThreadPoolExecutor(self.BCRYPT_WORKERS, thread_name_prefix="mlscope-auth")
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._accept_paused_until = 0.0
        self._next_expiry = 0.0

    # ---- the event loop ----

    def serve_forever(self, poll_interval: float = 0.25) -> None:
        try:
            while not self._stop.is_set():
                for key, mask in self._selector.select(poll_interval):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._on_ready(key.data, mask)
                now = time.monotonic()
                if now >= self._next_expiry:  # a sweep over every connection, a few times a second at most
                    self._next_expiry = now + 0.1
                    self._expire(now)
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for pool in (self._workers, self._bcrypt_workers):
            pool.shutdown(wait=False, cancel_futures=True)
        for sock in (self.socket, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def _accept(self) -> None:
        for _ in range(256):  # then give the other connections a turn
            try:
                sock, addr = self.socket.accept()
            except _WAITS:
                return
            except OSError as exc:  # EMFILE and friends: free a slot, or pause accepting for a moment
                log.warning("cannot accept a connection: %s", exc.strerror or exc)
                if not self._evict_oldest():
                    self._pause_accept()
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._conns) >= self.max_connections and not self._evict_oldest():
                try:
                    sock.send(_BUSY_REPLY)
                except OSError:
                    pass
                sock.close()
                continue
            state = _PEEK if self.ssl_context is not None else _READ
            conn = _Conn(sock, addr, state, time.monotonic() + self.read_timeout)
            self._conns[conn.fd] = conn
            self._wait_for_request(conn)
            self._selector.register(conn.fd, selectors.EVENT_READ, conn)

    def _pause_accept(self) -> None:
        self._selector.unregister(self.socket)
        self._accept_paused_until = time.monotonic() + 0.1

    def _evict_oldest(self) -> bool:
        if not self._waiting:
            return False
        _, conn = self._waiting.popitem(last=False)
        log.debug("closing the oldest waiting connection, from %s, to make room", conn.addr[0])
        self._close(conn)
        return True

    def _wait_for_request(self, conn: _Conn) -> None:
        self._waiting.pop(conn.fd, None)
        self._waiting[conn.fd] = conn

    def _on_ready(self, conn: _Conn, mask: int) -> None:
        if self._conns.get(conn.fd) is not conn:
            return  # closed earlier in this round
        try:
            if conn.state == _PEEK:
                self._peek_tls(conn)
            elif conn.state == _HANDSHAKE:
                self._handshake(conn)
            elif conn.state == _READ:
                self._read(conn)
            elif conn.state == _WRITE:
                self._write(conn)
        except OSError as exc:  # includes ssl.SSLError: the client went away or spoke nonsense
            log.debug("connection from %s: %s", conn.addr[0], exc)
            self._close(conn)
        except Exception:  # a bug must cost one connection, not the server
            log.warning("error on the connection from %s", conn.addr[0], exc_info=True)
            self._close(conn)

    def _peek_tls(self, conn: _Conn) -> None:
        first = conn.sock.recv(1, socket.MSG_PEEK)
        if not first:
            self._close(conn)
        elif first != b"\x16":  # not a TLS handshake record
            self._reply(conn, _NOT_TLS_REPLY, close=True)
        else:
            self._selector.unregister(conn.fd)
            conn.sock = self.ssl_context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
            self._selector.register(conn.fd, selectors.EVENT_READ, conn)
            conn.state = _HANDSHAKE
            self._handshake(conn)

    def _handshake(self, conn: _Conn) -> None:
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(conn.fd, selectors.EVENT_READ, conn)
            return
        except ssl.SSLWantWriteError:
            self._selector.modify(conn.fd, selectors.EVENT_WRITE, conn)
            return
        conn.state = _READ
        self._selector.modify(conn.fd, selectors.EVENT_READ, conn)
        self._read(conn)

    def _read(self, conn: _Conn) -> None:
        chunks = []
        while True:
            try:
                data = conn.sock.recv(65536)
            except _WAITS:
                break
            if not data:
                self._close(conn)
                return
            chunks.append(data)
            if len(data) < 65536 and not getattr(conn.sock, "pending", lambda: 0)():
                break
        if not chunks:
            return
        if not conn.inbuf.strip():
            conn.deadline = time.monotonic() + self.read_timeout  # a request has started
        conn.inbuf += b"".join(chunks)
        self._dispatch_if_complete(conn)

    def _dispatch_if_complete(self, conn: _Conn) -> None:
        conn.inbuf = conn.inbuf.lstrip(b"\r\n")
        end = _REQUEST_END.search(conn.inbuf)
        if end is None:
            if len(conn.inbuf) > self.MAX_HEADER_BYTES:
                self._reply(conn, _TOO_LARGE_REPLY, close=True)
            return
        request, conn.inbuf = conn.inbuf[:end.end()], conn.inbuf[end.end():]
        conn.state = _BUSY
        self._waiting.pop(conn.fd, None)
        self._selector.unregister(conn.fd)
        # Credentials that need a bcrypt check (new, wrong, unknown) queue apart, so a flood of them
        # cannot delay a scrape whose credentials are cached.
        slow = self.auth.users and self.auth.needs_bcrypt(_authorization(request))
        (self._bcrypt_workers if slow else self._workers).submit(self._work, conn, request)

    def _work(self, conn: _Conn, request: bytes) -> None:
        """In a worker thread: compute the reply, hand it back to the loop."""
        try:
            handler = _Handler(request, conn.addr, self)
            reply, close = handler.wfile.getvalue(), handler.close_connection
        except Exception:  # a bug must cost one request, not the server
            log.warning("error serving %s", conn.addr[0], exc_info=True)
            reply, close = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"), True
        self._done.append((conn, reply, close))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # the loop is already due to wake up

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except _WAITS:
            pass
        while self._done:
            conn, reply, close = self._done.popleft()
            if conn.fd in self._conns:
                self._selector.register(conn.fd, selectors.EVENT_READ, conn)
                self._reply(conn, reply, close)

    def _reply(self, conn: _Conn, reply: bytes, close: bool) -> None:
        self._waiting.pop(conn.fd, None)
        conn.state, conn.outbuf, conn.close_after = _WRITE, memoryview(reply), close
        conn.deadline = time.monotonic() + self.read_timeout
        try:
            self._write(conn)
        except OSError as exc:
            log.debug("writing to %s: %s", conn.addr[0], exc)
            self._close(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except _WAITS:
                self._selector.modify(conn.fd, selectors.EVENT_WRITE, conn)
                return
            conn.outbuf = conn.outbuf[sent:]
        if conn.close_after:
            self._close(conn)
            return
        conn.state = _READ
        conn.deadline = time.monotonic() + self.idle_timeout
        self._selector.modify(conn.fd, selectors.EVENT_READ, conn)
        self._wait_for_request(conn)
        if conn.inbuf:  # a pipelined request
            conn.deadline = time.monotonic() + self.read_timeout
            self._dispatch_if_complete(conn)

    def _expire(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self.socket, selectors.EVENT_READ, None)
        for conn in [c for c in self._conns.values() if c.deadline < now and c.state != _BUSY]:
            log.debug("closing connection from %s: no progress for its deadline (%s)", conn.addr[0], conn.state)
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.fd
        self._conns.pop(fd, None)
        self._waiting.pop(fd, None)
        if conn.state != _BUSY:
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        if conn.state == _WRITE and not isinstance(conn.sock, ssl.SSLSocket):
            _discard_unread(conn.sock)
        conn.sock.close()


def _discard_unread(sock: socket.socket) -> None:
    """Closing with unread input sends a reset, which can destroy the reply still in flight."""
    try:
        for _ in range(16):
            if not sock.recv(65536):
                return
    except OSError:
        pass


def _authorization(request: bytes) -> str | None:
    found = _AUTHORIZATION.search(request)
    return found.group(1).strip().decode("latin-1") if found else None


def _usable_fds() -> int:
    """How many connections the fd limit allows, after raising the soft limit to the hard one (as Go does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, soft - 64)  # the rest for the exporter's own files and AWS/NVML connections

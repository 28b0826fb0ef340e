"""`mlscope demo aws`: a local AWS emulator (moto's server, in-process, patched; see patches.py).

Serves every AWS API moto knows (SageMaker, CloudWatch, Resource Groups Tagging, ...) on one
port, with any credentials. Health check: `GET /-/healthy` answers 200 `ok` (moto's own
`/moto-api/` dashboard works too).

In tests: `server, url = start_emulator()` then `boto3.client(..., endpoint_url=url)`;
`server.stop()` ends it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, Callable, Sequence

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from ..cli import OneLineParser, add_setting_flags, stop_on_signals
from .. import logs
from ..sagemaker.config import account_ids
from ..settings import Setting, SettingError, choice, duration, listen_address, resolve
from . import patches

log = logging.getLogger("mlscope.demo.aws")

DEFAULT_PORT = 5000
DEFAULT_ACCOUNT = DEFAULT_ACCOUNT_ID  # moto's account for credentials that belong to no role
HEALTH_PATH = "/-/healthy"


class HealthMiddleware:
    """Answers GET /-/healthy itself; passes everything else to moto."""

    def __init__(self, app: Callable):
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "3")])
            return [b"ok\n"]
        return self.app(environ, start_response)


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler, with the per-request access log at debug level."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)


class EmulatorServer(ThreadedMotoServer):
    """moto's ThreadedMotoServer, but it binds in start() (a bad address raises OSError there
    instead of hanging) and serves /-/healthy."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        super().__init__(ip_address=host, port=port, verbose=False)
        self._patched = False

    def start(self) -> None:
        app = HealthMiddleware(DomainDispatcherApplication(create_backend_app))
        # Bind here: werkzeug prints and calls sys.exit(1) itself when the port is taken.
        family = socket.AF_INET6 if ":" in self._ip_address else socket.AF_INET
        sock = socket.create_server((self._ip_address, self._port), family=family)
        try:
            self._server = make_server(self._ip_address, self._port, app, threaded=True,
                                       request_handler=QuietRequestHandler, fd=sock.fileno())
        finally:
            sock.close()  # werkzeug holds its own duplicate of the socket
        patches.apply()  # undone by stop(): moto is itself again for whatever runs next in this process
        self._patched = True
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mlscope-aws-emulator", daemon=True)
        self._thread.start()
        self._server_ready_event.set()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self._patched:
            self._patched = False
            patches.undo()


def start_emulator(host: str = "127.0.0.1", port: int = 0,
                   retention_seconds: float | None = None) -> tuple[EmulatorServer, str]:
    """Start the patched moto server in this process; return (server, base URL). server.stop() ends it.

    Port 0 picks a free port. Raises OSError when the address cannot be bound.
    """
    if retention_seconds is not None:
        patches.set_retention(retention_seconds)
    server = EmulatorServer(host, port)
    server.start()
    return server, server.url


start = start_emulator  # short alias


SETTINGS = [
    Setting("listen", listen_address, ("", DEFAULT_PORT),
            f"address to serve on, HOST:PORT (use 127.0.0.1:{DEFAULT_PORT} for loopback only)"),
    Setting("retention", duration, patches.DEFAULT_RETENTION_SECONDS,
            "how long CloudWatch data is kept, e.g. 6h (memory stays bounded)"),
    Setting("linked_accounts", account_ids, (), "source accounts linked to the default account (" +
            DEFAULT_ACCOUNT + ") as their CloudWatch monitoring account, comma-separated ids"),
    Setting("log_level", choice("debug", "info", "warning", "error"), "info", "log level"),
]


def main(argv: Sequence[str]) -> int:
    prog = "mlscope demo aws"
    parser = OneLineParser(prog=prog, description="local AWS emulator: moto with MLScope's patches")
    add_setting_flags(parser, SETTINGS)
    # no config file for the demo tools: an MLSCOPE_CONFIG meant for an exporter is ignored
    environ = {k: v for k, v in os.environ.items() if k != "MLSCOPE_CONFIG"}
    cfg = resolve(SETTINGS, vars(parser.parse_args(list(argv))), environ)
    listen = cfg.listen or SETTINGS[0].default
    retention = cfg.retention if cfg.retention is not None else SETTINGS[1].default
    if retention <= 0:
        raise SettingError("--retention: must be more than zero")
    logs.setup(cfg.log_level or "info")
    linked = cfg.linked_accounts or ()
    if DEFAULT_ACCOUNT in linked:
        raise SettingError(f"--linked-accounts: {DEFAULT_ACCOUNT} is the monitoring account itself")
    host, port = listen
    try:
        server, url = start_emulator(host or "0.0.0.0", port, retention_seconds=retention)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SettingError(f"--listen: cannot listen on {host or '0.0.0.0'}:{port}: {reason}") from None

    patches.link_accounts(DEFAULT_ACCOUNT, linked)
    if linked:
        log.info("CloudWatch of account %s is the monitoring account of %s", DEFAULT_ACCOUNT, ", ".join(linked))
    stop = stop_on_signals(log)
    bound_host, bound_port = server.get_host_and_port()
    log.info("AWS emulator (moto, patched) listening on http://%s:%s (health: %s)",
             bound_host or "0.0.0.0", bound_port, HEALTH_PATH)
    while not stop.wait(1):
        pass
    server.stop()
    log.info("stopped")
    return 0

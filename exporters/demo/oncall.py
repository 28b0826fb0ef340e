"""`mlscope demo oncall`: a stand-in for the on-call bridge, so the demo's pages go somewhere visible.

Alertmanager's webhooks (provisioning/alertmanager/alertmanager.yml: /page and /heartbeat) POST
here; every alert becomes one log line (`docker compose logs oncall-webhook`), and
`GET /alerts` returns the newest 200 as JSON. Replace it with your real on-call bridge.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Sequence

from ..cli import demo_settings, stop_on_signals
from ..settings import Setting, SettingError, choice, listen_address

log = logging.getLogger("mlscope.demo.oncall")

DEFAULT_PORT = 9095
SETTINGS = [
    Setting("listen", listen_address, ("", DEFAULT_PORT),
            f"address to serve on, HOST:PORT (use 127.0.0.1:{DEFAULT_PORT} for loopback only)"),
    Setting("log_level", choice("debug", "info", "warning", "error"), "info", "log level"),
]


class OnCallServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]):
        self.received: deque[dict] = deque(maxlen=200)
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: OnCallServer

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            # an Alertmanager webhook posts an object; a notifier speaking Alertmanager's API (vmalert) a list
            alerts = body if isinstance(body, list) else body.get("alerts", [])
        except (ValueError, AttributeError):
            self._send(400, b"expected an Alertmanager webhook JSON body\n", "text/plain")
            return
        for alert in alerts:
            labels = alert.get("labels", {})
            self.server.received.append({"path": self.path, **alert})
            context = " ".join(f"{k}={v}" for k, v in sorted(labels.items())
                               if k not in ("alertname", "severity") and not k.startswith("__"))
            log.warning("%s %s %s severity=%s %s summary=%r", self.path.strip("/") or "webhook",
                        alert.get("status", "?").upper(), labels.get("alertname", "?"),
                        labels.get("severity", "-"), context, alert.get("annotations", {}).get("summary", ""))
        self._send(200, b"", "text/plain")

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/-/healthy":
            self._send(200, b"ok\n", "text/plain")
        elif self.path == "/alerts":
            self._send(200, json.dumps(list(self.server.received)).encode(), "application/json")
        else:
            self._send(404, b"Not Found\n", "text/plain")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug(fmt, *args)


def main(argv: Sequence[str]) -> int:
    cfg = demo_settings("mlscope demo oncall", __doc__.splitlines()[0], SETTINGS, argv)
    host, port = cfg.listen
    try:
        server = OnCallServer((host, port))
    except OSError as exc:
        raise SettingError(f"--listen: cannot listen on {host or '0.0.0.0'}:{port}: {exc.strerror or exc}") from None

    stop_on_signals(log, server.shutdown)
    log.info("on-call stand-in listening on http://%s:%s (POST /page, /heartbeat; GET /alerts)",
             host or "0.0.0.0", server.server_address[1])
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0

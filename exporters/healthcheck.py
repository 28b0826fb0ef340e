"""`mlscope healthcheck URL`: the container healthcheck, which still passes with TLS or basic auth on.

/-/healthy stays behind basic auth, as with Prometheus' exporter-toolkit, and it only says that the
server answers. So an answer of 200, or 401 (serving, credentials required), is healthy. An exporter
with TLS on is reached over https when plain http gets a 400 or no HTTP answer; its certificate is not checked,
as the healthcheck only talks to its own container. Exit status 0 when healthy, else 1 and one line.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import urllib.error
import urllib.request
from typing import Sequence

from .cli import OneLineParser

HEALTHY = (200, 401)


def status(url: str, timeout: float) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def check(url: str, timeout: float) -> str | None:
    """None when healthy, else why not."""
    try:
        try:
            code = status(url, timeout)
            tls = code == 400  # a TLS listener answers plain HTTP with 400
        except (http.client.HTTPException, ConnectionResetError, urllib.error.URLError) as exc:
            tls = not isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)  # or drops it
            if not tls or not url.startswith("http://"):
                raise
        if tls and url.startswith("http://"):
            code = status("https://" + url[len("http://"):], timeout)
    except (OSError, http.client.HTTPException) as exc:
        return f"{url}: {getattr(exc, 'reason', exc) or type(exc).__name__}"
    return None if code in HEALTHY else f"{url}: HTTP {code}"


def main(argv: Sequence[str]) -> int:
    parser = OneLineParser(prog="mlscope healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="e.g. http://127.0.0.1:9856/-/healthy")
    parser.add_argument("--timeout", type=float, default=4, help="seconds (default 4)")
    args = parser.parse_args(argv)
    problem = check(args.url, args.timeout)
    if problem:
        print(f"mlscope healthcheck: unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0

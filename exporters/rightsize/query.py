"""A small client for the PromQL HTTP API (Prometheus, VictoriaMetrics, Thanos, Mimir).

Basic auth, bearer token, a CA file or no TLS verification, and a timeout. Every failure becomes one
`RightsizeError` line that says what went wrong and what to check. It counts the queries it sends.
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

Labels = tuple[tuple[str, str], ...]
# Prometheus refuses a range query of more than 11,000 points per series; stay under it.
MAX_POINTS = 10_000
CHUNK_SECONDS = 2 * 86400  # one range answer covers at most 2 days


class RightsizeError(Exception):
    """Bad input or an unusable query API: the message is the one line the user sees."""


@dataclass
class Auth:
    basic_user: str | None = None
    basic_password: str | None = None
    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass
class PromQL:
    url: str
    timeout: float = 60.0
    auth: Auth = field(default_factory=Auth)
    queries: int = 0

    def __post_init__(self) -> None:
        self._labels: dict[bytes, dict] = {}  # a series' label JSON, parsed once for all its chunks
        self.url = self.url.rstrip("/")
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RightsizeError(f"--prometheus: must be an http:// or https:// URL, got {self.url!r}")
        self._context = None
        if parsed.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=self.auth.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise RightsizeError(f"--ca-file: cannot load {self.auth.ca_file}: {exc}") from None
            if self.auth.insecure_skip_verify:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "mlscope-rightsize"}
        if self.auth.bearer_token:
            headers["Authorization"] = f"Bearer {self.auth.bearer_token}"
        elif self.auth.basic_user is not None:
            pair = f"{self.auth.basic_user}:{self.auth.basic_password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def api(self, path: str, params: dict[str, str] | None = None) -> object:
        """POST (GET without params) to /api/v1/<path>; return `data` of a successful answer."""
        return self._decoded(self._fetch(path, params), path)

    def _fetch(self, path: str, params: dict[str, str] | None) -> bytes:
        """The raw answer body; every transport or HTTP failure is one RightsizeError line."""
        body = urllib.parse.urlencode(params).encode() if params else None
        request = urllib.request.Request(f"{self.url}/api/v1/{path}", data=body, headers=self._headers(),
                                         method="POST" if body else "GET")
        if params is not None:
            self.queries += 1
        what = f"{self.url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read() or b""
            if exc.code in (401, 403):
                raise RightsizeError(f"{what} refused the query (HTTP {exc.code}): check --basic-auth-user, "
                                     "--basic-auth-password-file or --bearer-token-file") from None
            message = _error_message(raw)
            if exc.code in (422, 503) and (b'"timeout"' in raw or "timed out" in message or "timeout" in message):
                raise RightsizeError(f"{what}: the query timed out on the server ({message}); use a shorter "
                                     "--lookback or raise --query-timeout") from None
            raise RightsizeError(f"{what} answered HTTP {exc.code} to /api/v1/{path}"
                                 f"{': ' + message if message else ''}") from None
        except (socket.timeout, TimeoutError):
            raise RightsizeError(f"{what}: timed out, no answer within {self.timeout:g} s (--query-timeout); "
                                 "use a shorter --lookback or raise --query-timeout") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise RightsizeError(f"{what}: timed out, no answer within {self.timeout:g} s (--query-timeout)") from None
            if isinstance(reason, ssl.SSLError):
                raise RightsizeError(f"{what}: TLS failed ({reason.reason or reason}); "
                                     "check --ca-file or --insecure-skip-verify") from None
            raise RightsizeError(f"cannot reach the query API at {what}: {getattr(reason, 'strerror', None) or reason}") \
                from None
        except (OSError, ValueError) as exc:
            raise RightsizeError(f"cannot reach the query API at {what}: {exc}") from None
        return raw

    def _decoded(self, raw: bytes, path: str) -> object:
        what = self.url
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RightsizeError(f"{what}/api/v1/{path} did not answer JSON: is it a Prometheus-compatible "
                                 "query API?") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise RightsizeError(f"{what}: query failed: {_error_message(raw) or 'no error message'}")
        return answer.get("data")

    def _server_timeout(self) -> str:
        """The same timeout for the server's query engine, in whole milliseconds (Prometheus parses no 0.001s)."""
        return f"{max(1, round(self.timeout * 1000))}ms"

    def instant(self, expr: str, at: float) -> list[tuple[dict, float]]:
        data = self.api("query", {"query": expr, "time": _ts(at), "timeout": self._server_timeout()})
        return [(item["metric"], float(item["value"][1])) for item in _vector(data, expr)]

    def range(self, expr: str, start: float, end: float, step: float) -> list[tuple[dict, array]]:
        """Each series' values on the step grid start, start+step, ..., end (float32, NaN where it has none).

        The range is asked for in chunks of CHUNK_SECONDS, so one answer stays small (a 1,000-endpoint
        fleet's 2 days of one metric is about 20 MB) and the number of queries depends on the lookback,
        never on the fleet."""
        steps = int(round((end - start) / step)) + 1
        per_chunk = max(1, min(MAX_POINTS, int(CHUNK_SECONDS // step)))
        chunks = [(first, min(steps, first + per_chunk) - 1) for first in range(0, steps, per_chunk)]

        def fetch(chunk: tuple[int, int]) -> bytes:
            return self._fetch("query_range", {"query": expr, "start": _ts(start + chunk[0] * step),
                                               "end": _ts(start + chunk[1] * step), "step": f"{step:g}",
                                               "timeout": self._server_timeout()})

        merged: dict[Labels, tuple[dict, array]] = {}
        # The next chunk is fetched while this one is parsed: Prometheus works while Python does.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(fetch, chunks[0])
            for i, (first, last) in enumerate(chunks):
                raw = pending.result()
                if i + 1 < len(chunks):
                    pending = pool.submit(fetch, chunks[i + 1])
                self._merge(merged, raw, expr, start, step, steps, first, last)
                del raw
        return list(merged.values())

    def _merge(self, merged: dict, raw: bytes, expr: str, start: float, step: float, steps: int, first: int,
               last: int) -> None:
        """Put one chunk's answer (steps first..last) on each series' grid."""
        for labels, stamps, values in self._matrix(raw, expr):
            key = tuple(sorted(labels.items()))
            entry = merged.get(key)
            if entry is None:
                entry = merged[key] = (labels, array("f", [math.nan]) * steps)
            grid = entry[1]
            if len(values) == last - first + 1:  # a value at every step: no timestamp to read
                grid[first:last + 1] = array("f", map(float, values))
            else:
                for stamp, value in zip(stamps, values):
                    index = int(round((_stamp(stamp) - start) / step))
                    if 0 <= index < steps:
                        grid[index] = float(value)

    def _matrix(self, raw: bytes, expr: str) -> Iterator[tuple[dict, list, list]]:
        """(labels, timestamps, values) of each series of a range answer. Prometheus' compact JSON is cut
        apart directly (about 4 times faster than json.loads, which a fleet's millions of points make count);
        any other layout goes through json.loads."""
        head, found, rest = raw.partition(b'"result":[')
        if not (found and b'"status":"success"' in head and b'"resultType":"matrix"' in head
                and rest.startswith((b'{"metric":', b"]"))):
            data = self._decoded(raw, "query_range")
            for item in _vector(data, expr, "matrix"):
                yield item["metric"], [float(t) for t, _ in item["values"]], [v for _, v in item["values"]]
            return
        for series in rest.split(b'{"metric":')[1:]:
            cut = series.find(b',"values":[')
            if cut < 0:
                raise RightsizeError(f"unexpected answer to {expr!r}: a series without values")
            parts = series[cut + 11:].split(b'"')  # [[t,"v"],[t,"v"]] -> '[[t,', 'v', '],[t,', 'v', ...
            values = parts[1::2]
            labels = self._labels.get(series[:cut])
            if labels is None:
                labels = self._labels[series[:cut]] = json.loads(series[:cut])
            yield labels, parts[0::2][:len(values)], values

    def retention_seconds(self) -> float | None:
        """The store's time-based retention, where it says (Prometheus); None when unknown."""
        try:
            data = self.api("status/runtimeinfo")
        except RightsizeError as exc:
            if "HTTP 404" in str(exc) or "HTTP 400" in str(exc):
                return None  # VictoriaMetrics, Thanos and Mimir do not serve this page
            raise
        text = str((data or {}).get("storageRetention", "")) if isinstance(data, dict) else ""
        match = re.match(r"^\s*((?:\d+(?:ms|s|m|h|d|w|y))+)", text)
        return _prom_duration(match.group(1)) if match else None


def _vector(data: object, expr: str, kind: str = "vector") -> list[dict]:
    if not isinstance(data, dict) or data.get("resultType") != kind or not isinstance(data.get("result"), list):
        raise RightsizeError(f"unexpected answer to {expr!r}: not a {kind}")
    return data["result"]


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        return str(body.get("error") or "").splitlines()[0][:300] if isinstance(body, dict) else ""
    except (ValueError, IndexError):
        return raw.decode(errors="replace").strip().splitlines()[0][:300] if raw.strip() else ""


def _stamp(raw: bytes | float) -> float:
    """A timestamp from the cut-apart JSON ('[[1794826800,' or '],[1794827100,') or already a number."""
    return raw if isinstance(raw, float) else float(raw.strip(b"[],"))


def _ts(seconds: float) -> str:
    return f"{seconds:.3f}"


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _prom_duration(text: str) -> float:
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))

"""Test helpers shared by every test module: real processes on 127.0.0.1, scraping, promtool, Prometheus.

Integration tests that need a binary call `require_binary`: it skips locally with the install
command, and FAILS when CI=true (CI must never pass by skipping).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlscope.local import free_port  # noqa: F401 (re-exported for the tests)
from mlscope.supervisor import launch, terminate

ROOT = Path(__file__).resolve().parent.parent
APT_PACKAGE = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "victoria-metrics": "victoria-metrics",
    "vmagent": "victoria-metrics",
    "vmalert": "victoria-metrics",
}


CURRENT_TEST: pytest.Item | None = None  # set by conftest.py


def require_binary(name: str) -> str:
    """The binary's path. A test that needs one must be marked integration (or e2e), so that `make unit`
    runs everywhere and skips nothing; this fails the test that is not."""
    item = CURRENT_TEST
    if item is not None and not (item.get_closest_marker("integration") or item.get_closest_marker("e2e")):
        pytest.fail(f"{item.nodeid} needs {name}: mark it @pytest.mark.integration")
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} not found on PATH; install it with: apt-get install -y {APT_PACKAGE.get(name, name)}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class Process:
    """A real process started by `mlscope local`'s launcher (its own process group, ended if this thread dies,
    output in a file); stop() ends it and returns what it printed."""

    def __init__(self, args: list[str], env: dict | None = None, cwd: str | Path | None = None):
        self.args = args
        fd, log = tempfile.mkstemp(prefix="mlscope-test-", suffix=".log")
        os.close(fd)
        self.log = Path(log)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = launch(args, full_env, Path(cwd) if cwd else None, self.log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 20, **kwargs) -> requests.Response:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.args[:3]} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                resp = requests.get(url, timeout=2, **kwargs)
                if resp.status_code < 500:
                    return resp
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"{url} not ready after {timeout}s ({last}):\n{self.output()}")

    def stop(self, timeout: float = 10) -> str:
        terminate(self.proc, timeout)
        return self.output()


def utc(ts: float) -> datetime:
    """A Unix time as the aware UTC datetime boto3 takes."""
    return datetime.fromtimestamp(ts, timezone.utc)


def mlscope_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlscope", *args]


def start_exporter(command: str, *args: str, env: dict | None = None, port: int | None = None,
                   scheme: str = "http", **wait_kwargs) -> tuple[Process, str]:
    """Start `mlscope COMMAND` on 127.0.0.1:<free port>; return the process and its base URL."""
    port = port or free_port()
    proc = Process(mlscope_args(command, "--listen", f"127.0.0.1:{port}", *args), env=env, cwd=ROOT)
    base = f"{scheme}://127.0.0.1:{port}"
    proc.wait_http(base + "/-/healthy", **wait_kwargs)
    return proc, base


def run_cli(*args: str, env: dict | None = None, timeout: float = 30, stdin: str | None = None
            ) -> subprocess.CompletedProcess:
    """Run `mlscope ARGS` to completion (for commands expected to exit), with `stdin` as its input."""
    return subprocess.run(mlscope_args(*args), capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})}, input=stdin or "")


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2 and one line on stderr that holds every needle: how every bad input must end."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def scrape(url: str, **kwargs) -> str:
    resp = requests.get(url.rstrip("/") + "/metrics" if not url.endswith("/metrics") else url, timeout=10, **kwargs)
    resp.raise_for_status()
    return resp.text


def samples(text: str) -> dict[str, list[tuple[dict, float]]]:
    """Parse exposition text into {sample name: [(labels, value), ...]}."""
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(text_or_samples, name: str, **labels) -> float:
    """The one sample named `name` whose labels include `labels`."""
    parsed = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    found = [v for lbls, v in parsed.get(name, []) if all(lbls.get(k) == str(val) for k, val in labels.items())]
    assert len(found) == 1, f"expected one {name}{labels}, found {len(found)}: {parsed.get(name)}"
    return found[0]


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess:
    promtool = require_binary("promtool")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


class Prometheus:
    """The real Debian Prometheus on a free loopback port, with a config we write."""

    def __init__(self, config: dict, tmp: Path, rule_files: Iterable[Path] = (), extra_args: Iterable[str] = ()):
        binary = require_binary("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = dict(config)
        if rule_files:
            config["rule_files"] = [str(p) for p in rule_files]
        self.config_path = tmp / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.data = tmp / "prometheus-data"
        self.args = [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.data}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle", *extra_args]
        self.start()

    def start(self) -> None:
        self.process = Process(self.args)
        self.process.wait_http(self.url + "/-/ready", timeout=30)

    def stop(self) -> str:
        return self.process.stop()

    def query(self, expr: str) -> list[dict]:
        resp = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 30, min_results: int = 1) -> list[dict]:
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if len(result) >= min_results:
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr!r} returned {result} after {timeout}s\n{self.process.output()[-3000:]}")


def scrape_config(job: str, targets: list[str], interval: str = "1s", **extra) -> dict:
    return {"job_name": job, "scrape_interval": interval, "scrape_timeout": interval,
            "static_configs": [{"targets": targets}], **extra}


class WebhookReceiver:
    """A stand-in for on-call: `mlscope demo oncall`'s server, in this process on 127.0.0.1, which records
    every alert Alertmanager POSTs (the newest 200)."""

    def __init__(self) -> None:
        import threading

        from mlscope.demo.oncall import OnCallServer

        self.server = OnCallServer(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    @property
    def received(self) -> list[dict]:
        return list(self.server.received)

    def alerts(self, path: str | None = None) -> list[dict]:
        """Every alert received (optionally only on one path), newest notification last."""
        return [alert for alert in self.received if path is None or alert["path"] == path]

    def at(self, path: str) -> list[dict]:
        """The labels of every alert that reached `path`."""
        return [alert["labels"] for alert in self.alerts(path)]

    def wait(self, path: str, timeout: float = 20, **labels: str) -> dict:
        """The labels of the first alert at `path` that carries `labels`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for got in self.at(path):
                if all(got.get(k) == v for k, v in labels.items()):
                    return got
            time.sleep(0.1)
        raise AssertionError(f"{labels} never reached {path}; got {self.received}")

    def wait_for(self, alertname: str, timeout: float = 60, path: str | None = None, status: str = "firing") -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for alert in self.alerts(path):
                if alert["labels"].get("alertname") == alertname and alert.get("status") == status:
                    return alert
            time.sleep(0.2)
        raise AssertionError(f"{alertname} ({status}) not received in {timeout}s; got {self.received}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Host exporter vs node_exporter, side by side on loopback: scrape latency, CPU per scrape, RSS, size.

Run: `.venv/bin/python -m bench host` (or `make bench`). Needs Debian's prometheus-node-exporter.
Both exporters are scraped the way Prometheus scrapes (keep-alive connection, Accept-Encoding: gzip),
interleaved, so background load on a shared machine hits both alike. Targets: median ratio <= 1.0,
our RSS <= 40 MB.
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from helpers import Process, free_port

ROOT = Path(__file__).resolve().parent.parent
SCRAPES = int(os.environ.get("BENCH_HOST_SCRAPES", "200"))
WARMUP = 10
RSS_TARGET_MB = 40.0
HEADERS = {
    "Accept": "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",  # what Prometheus 2.42 sends for the text format
    "Accept-Encoding": "gzip",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all threads (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class Target:
    def __init__(self, name: str, args: list[str], port: int):
        self.name = name
        self.port = port
        self.process = Process(args, cwd=ROOT)
        self.proc = self.process.proc
        self.conn: http.client.HTTPConnection | None = None
        self.latencies: list[float] = []
        self.sizes: list[int] = []
        self.samples: list[int] = []
        self.cpu_start = 0.0
        self.cpu = 0.0

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.process.output()[-2000:]}")
            try:
                self.scrape()
                return
            except OSError:
                self.conn = None
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.process.output()[-2000:]}")

    def scrape(self) -> tuple[float, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        start = time.perf_counter()
        self.conn.request("GET", "/metrics", headers=HEADERS)
        resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - start
        if resp.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {resp.status}")
        if resp.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return elapsed, body

    def measure(self) -> None:
        elapsed, body = self.scrape()
        self.latencies.append(elapsed)
        self.sizes.append(len(body))
        self.samples.append(sum(1 for line in body.splitlines() if line and not line.startswith(b"#")))

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.process.stop()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if not node_exporter:
        raise RuntimeError("prometheus-node-exporter not found; install it with: apt-get install -y "
                           "prometheus-node-exporter")
    ne_port, our_port = free_port(), free_port()
    targets = [
        Target("node_exporter", [node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}"], ne_port),
        Target("mlscope", [sys.executable, "-m", "mlscope", "host-exporter", "--listen", f"127.0.0.1:{our_port}"],
               our_port),
    ]
    try:
        for target in targets:
            target.wait_ready()
        for _ in range(WARMUP):
            for target in targets:
                target.scrape()
        for target in targets:
            target.cpu_start = cpu_seconds(target.proc.pid)
        for i in range(SCRAPES):
            for target in (targets if i % 2 == 0 else targets[::-1]):  # alternate who goes first
                target.measure()
        for target in targets:
            target.cpu = cpu_seconds(target.proc.pid) - target.cpu_start
        rss = {t.name: rss_mb(t.proc.pid) for t in targets}
    finally:
        for target in targets:
            target.stop()

    ne, ours = targets
    rows = [
        ("median scrape (ms)", lambda t: statistics.median(t.latencies) * 1e3, "{:.2f}"),
        ("p95 scrape (ms)", lambda t: p95(t.latencies) * 1e3, "{:.2f}"),
        ("CPU per scrape (ms)", lambda t: t.cpu / SCRAPES * 1e3, "{:.2f}"),
        ("RSS after run (MB)", lambda t: rss[t.name][0], "{:.1f}"),
        ("peak RSS (MB)", lambda t: rss[t.name][1], "{:.1f}"),
        ("samples per scrape", lambda t: statistics.median(t.samples), "{:.0f}"),
        ("bytes per scrape", lambda t: statistics.median(t.sizes), "{:.0f}"),
    ]
    print(f"host exporter vs node_exporter: {SCRAPES} interleaved scrapes each, keep-alive, gzip, "
          f"{os.cpu_count()} CPUs")
    print(f"{'':22} {'node_exporter':>14} {'mlscope':>10} {'ours/ne':>8}")
    results = {}
    for label, fn, fmt in rows:
        a, b = fn(ne), fn(ours)
        results[label] = (a, b)
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"{label:22} {fmt.format(a):>14} {fmt.format(b):>10} {ratio:>8}")
    median_ratio = results["median scrape (ms)"][1] / results["median scrape (ms)"][0]
    our_rss = results["peak RSS (MB)"][1]
    print(f"targets: median ratio <= 1.00: {'met' if median_ratio <= 1.0 else 'MISSED'} ({median_ratio:.2f}); "
          f"RSS <= {RSS_TARGET_MB:.0f} MB: {'met' if our_rss <= RSS_TARGET_MB else 'MISSED'} ({our_rss:.1f} MB)")


if __name__ == "__main__":
    main()

"""Host exporter vs node_exporter at equal work, side by side on loopback: scrape latency, CPU per scrape,
RSS, size, and the same per sample.

Run: `.venv/bin/python -m bench host` (or `make bench`). Needs Debian's prometheus-node-exporter.
Equal work: node_exporter runs with `--collector.disable-defaults` plus exactly MLScope's collectors, upstream
1.5's filesystem/disk exclusions (Debian patches them) and the same (empty) textfile directory, so both read
the same files and serve the same series. Both are scraped the way Prometheus scrapes (keep-alive, gzip),
interleaved, so background load on a shared machine hits both alike. Targets: median ratio <= 1.0,
RSS ratio <= 1.5.
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from helpers import Process, free_port

ROOT = Path(__file__).resolve().parent.parent
SCRAPES = int(os.environ.get("BENCH_HOST_SCRAPES", "200"))
WARMUP = 10
RSS_TARGET_RATIO = 1.5
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
    from mlscope.host import COLLECTORS, diskstats, filesystem

    tmp = Path(tempfile.mkdtemp(prefix="mlscope-bench-host-"))
    textfiles = tmp / "textfile"
    textfiles.mkdir()
    ne_port, our_port = free_port(), free_port()
    equal_work = [
        "--collector.disable-defaults", *(f"--collector.{name}" for name in COLLECTORS),
        f"--collector.filesystem.mount-points-exclude={filesystem.DEFAULT_MOUNT_POINTS_EXCLUDE}",
        f"--collector.filesystem.fs-types-exclude={filesystem.DEFAULT_FS_TYPES_EXCLUDE}",
        f"--collector.diskstats.device-exclude={diskstats.DEFAULT_DISK_DEVICE_EXCLUDE}",
        "--collector.netdev.device-exclude=", f"--collector.textfile.directory={textfiles}",
    ]
    targets = [
        Target("node_exporter", [node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}", *equal_work], ne_port),
        Target("mlscope", [sys.executable, "-m", "mlscope", "host-exporter", "--listen", f"127.0.0.1:{our_port}",
                           f"--collector.textfile.directory={textfiles}"], our_port),
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
        ("median per sample (us)", lambda t: statistics.median(t.latencies) / statistics.median(t.samples) * 1e6,
         "{:.2f}"),
        ("CPU per sample (us)", lambda t: t.cpu / SCRAPES / statistics.median(t.samples) * 1e6, "{:.2f}"),
    ]
    load = os.getloadavg()[0]
    print(f"host exporter vs node_exporter at equal work ({len(COLLECTORS)} collectors each): {SCRAPES} "
          f"interleaved scrapes each, keep-alive, gzip, {os.cpu_count()} CPUs, load1 {load:.2f} at the end")
    print(f"{'':22} {'node_exporter':>14} {'mlscope':>10} {'ours/ne':>8}")
    results = {}
    for label, fn, fmt in rows:
        a, b = fn(ne), fn(ours)
        results[label] = (a, b)
        ratio = f"{b / a:.2f}" if a else "-"
        print(f"{label:22} {fmt.format(a):>14} {fmt.format(b):>10} {ratio:>8}")
    median_ratio = results["median scrape (ms)"][1] / results["median scrape (ms)"][0]
    rss_ratio = results["peak RSS (MB)"][1] / results["peak RSS (MB)"][0]
    rss_verdict = "met" if rss_ratio <= RSS_TARGET_RATIO else "MISSED"
    print(f"targets at equal work: median ratio <= 1.00: {'met' if median_ratio <= 1.0 else 'MISSED'} "
          f"({median_ratio:.2f}); RSS ratio <= {RSS_TARGET_RATIO}: {rss_verdict} ({rss_ratio:.2f})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

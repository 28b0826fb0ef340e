"""GPU exporter benchmark (`python -m bench gpu`).

1. Fake NVML, 8 GPUs: scrape latency (median, p95) and CPU per scrape of collector + exposition,
   and the same minus the time spent inside the (fake) NVML calls: the exporter's own overhead.
   Target: < 5 ms per scrape for 8 GPUs, NVML time excluded.
2. Real NVML (when a driver is present): a full scrape against the raw NVML calls that scrape
   makes (recorded, then replayed back to back; target <= 1.5x), and against
   `nvidia-smi --query-gpu=<the same fields> --format=csv` (target: the scrape >= 5x faster).
   Also the cost of each NVML function, and of one background sampler round (GPM + PCIe).
Both parts run once per naming mode (--names mlscope, dcgm, both; MLSCOPE_BENCH_NAMES=mlscope,dcgm to choose):
the dcgm modes add the conversion to dcgm-exporter's names to the exporter's overhead.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from types import ModuleType
from typing import Any, Callable

from prometheus_client.registry import CollectorRegistry

from mlscope.gpu import fakenvml
from mlscope.gpu.collector import GpuCollector
from mlscope.gpu.events import XidWatcher
from mlscope.gpu.nvml import Session
from mlscope.gpu.sampler import Sampler
from mlscope.health import Health, ScrapeCollector
from mlscope.textformat import encode_text
from mlscope.web import MetricsServer, WebConfig

SMI_CANDIDATES = [
    "index", "uuid", "name", "driver_version", "pci.bus_id", "utilization.gpu", "utilization.memory",
    "memory.used", "memory.total", "memory.reserved", "temperature.gpu", "power.draw", "enforced.power.limit",
    "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks_event_reasons.active", "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total", "total_energy_consumption",
]


class Recorder:
    """Stands in for the pynvml module and records every nvml* call (for replaying them bare)."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self.calls: list[tuple[Callable, tuple, dict]] = []
        self.recording = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._module, name)
        if not (name.startswith("nvml") and callable(attr) and not isinstance(attr, type)):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.recording:
                self.calls.append((attr, args, kwargs))
            return attr(*args, **kwargs)
        return call


class Rig:
    def __init__(self, module: ModuleType, names: str = "mlscope") -> None:
        self.recorder = Recorder(module)
        self.health = Health()
        self.session = Session(self.recorder, retry_interval=30)
        self.sampler = Sampler(self.session, self.health, interval=1.0)
        self.xid = XidWatcher(self.session, self.health)
        self.collector = GpuCollector(self.session, self.health, xid=self.xid, sampler=self.sampler,
                                      simulated=getattr(module, "SIMULATED", False), names=names)
        self.collectors = [ScrapeCollector("gpu", self.collector, self.health), self.health]
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in self.collectors:
            self.registry.register(collector)

    def scrape(self) -> bytes:
        return encode_text(self.registry)  # what /metrics serves

    def close(self) -> None:
        self.xid.stop()
        self.sampler.stop()
        self.session.close()

    def record_one_scrape(self) -> list:
        self.recorder.calls = []
        self.recorder.recording = True
        try:
            self.scrape()
        finally:
            self.recorder.recording = False
        return list(self.recorder.calls)


def timed(fn: Callable[[], Any], n: int) -> tuple[list[float], float]:
    """Wall seconds of each of n runs, and the CPU seconds per run."""
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return walls, (time.process_time() - cpu0) / n


def replay(calls: list) -> None:
    for fn, args, kwargs in calls:
        try:
            fn(*args, **kwargs)
        except Exception:
            pass


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f}"


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def http_scrape_times(collectors: list, n: int) -> list[float]:
    server = MetricsServer(("127.0.0.1", 0), collectors, WebConfig(), "bench", "bench")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        for _ in range(5):
            urllib.request.urlopen(url, timeout=10).read()
        walls = []
        for _ in range(n):
            t0 = time.perf_counter()
            urllib.request.urlopen(url, timeout=10).read()
            walls.append(time.perf_counter() - t0)
        return walls
    finally:
        server.shutdown()
        server.server_close()


def bench_module(module: ModuleType, label: str, n: int, names: str = "mlscope") -> dict:
    rig = Rig(module, names)
    rig.sampler.sample_once()
    if getattr(module, "SIMULATED", False):
        time.sleep(0.01)
    rig.sampler.sample_once()
    for _ in range(10):
        body = rig.scrape()
    calls = rig.record_one_scrape()
    walls, cpu = timed(rig.scrape, n)
    raw_walls, raw_cpu = timed(lambda: replay(calls), n)
    http = http_scrape_times(rig.collectors, max(20, n // 5))
    samples_count = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    result = {"label": label, "walls": walls, "cpu": cpu, "raw": raw_walls, "raw_cpu": raw_cpu, "http": http,
              "calls": calls, "samples": samples_count, "bytes": len(body), "rig": rig}
    return result


def per_function_costs(calls: list, repeat: int = 20) -> list[tuple[str, int, float]]:
    by_name: dict[str, list] = {}
    for call in calls:
        by_name.setdefault(call[0].__name__, []).append(call)
    out = []
    for name, group in by_name.items():
        walls, _cpu = timed(lambda g=group: replay(g), repeat)
        out.append((name, len(group), statistics.median(walls) / len(group)))
    return sorted(out, key=lambda r: -r[1] * r[2])


def smi_fields() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    help_text = subprocess.run([smi, "--help-query-gpu"], capture_output=True, text=True, timeout=30).stdout
    known = set(re.findall(r'"([a-z0-9_.\[\]]+)"', help_text))
    fields = [f for f in SMI_CANDIDATES if f in known]
    if "clocks_event_reasons.active" not in known and "clocks_throttle_reasons.active" in known:
        fields.append("clocks_throttle_reasons.active")
    return fields


def main() -> None:
    n = int(os.environ.get("MLSCOPE_BENCH_SCRAPES", "300"))
    modes = [m.strip() for m in os.environ.get("MLSCOPE_BENCH_NAMES", "mlscope,dcgm,both").split(",") if m.strip()]
    print(f"python {sys.version.split()[0]}, {n} scrapes per measurement, names: {', '.join(modes)}")
    for names in modes:
        bench_fake(n, names)
    for names in modes:
        if not bench_real(n, names):
            break


def bench_fake(n: int, names: str) -> None:
    fakenvml.configure(8)
    fake = bench_module(fakenvml, "fake NVML, 8 GPUs", n, names)
    scrape_med = statistics.median(fake["walls"])
    nvml_med = statistics.median(fake["raw"])
    print(f"\n[fake, --names {names}] 8 GPUs: {fake['samples']} samples, {fake['bytes']} bytes, "
          f"{len(fake['calls'])} NVML calls per scrape")
    table([
        ("scrape (collector + exposition)", ms(scrape_med), ms(p95(fake["walls"])), ms(fake["cpu"])),
        ("  of which fake NVML calls (replayed)", ms(nvml_med), ms(p95(fake["raw"])), ms(fake["raw_cpu"])),
        ("  exporter overhead (scrape - NVML)", ms(scrape_med - nvml_med), "", ms(fake["cpu"] - fake["raw_cpu"])),
        ("HTTP GET /metrics (loopback)", ms(statistics.median(fake["http"])), ms(p95(fake["http"])), ""),
    ], ("measurement", "median ms", "p95 ms", "CPU ms/scrape"))
    overhead = scrape_med - nvml_med
    verdict = "OK" if overhead < 0.005 else "OVER"
    print(f"target: exporter overhead < 5 ms for 8 GPUs -> {overhead * 1000:.2f} ms ({verdict})")
    fake["rig"].close()
    fakenvml.configure(0)


def bench_real(n: int, names: str) -> bool:
    """The real-NVML part; False when there is no NVML here."""
    import pynvml
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        print(f"\n[real] NVML not available here ({type(exc).__name__}): real-GPU ratios skipped")
        return False
    count = pynvml.nvmlDeviceGetCount()
    models = {pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)}
    driver = pynvml.nvmlSystemGetDriverVersion()
    real = bench_module(pynvml, "real NVML", max(50, n // 3), names)
    rig = real["rig"]
    unsupported = {d.index: sorted(d.unsupported) for d in rig.session.devices}
    print(f"\n[real, --names {names}] {count} GPU(s) {', '.join(sorted(models))}, driver {driver}: "
          f"{real['samples']} samples, {len(real['calls'])} NVML calls per scrape; not supported: {unsupported}")
    scrape_med = statistics.median(real["walls"])
    raw_med = statistics.median(real["raw"])
    rows = [
        ("exporter scrape (collector + exposition)", ms(scrape_med), ms(p95(real["walls"])), ms(real["cpu"]), ""),
        ("raw NVML calls of one scrape", ms(raw_med), ms(p95(real["raw"])), ms(real["raw_cpu"]),
         f"scrape/raw = {scrape_med / raw_med:.2f}x (target <= 1.5x)"),
        ("HTTP GET /metrics (loopback)", ms(statistics.median(real["http"])), ms(p95(real["http"])), "", ""),
    ]
    fields = smi_fields()
    if fields:
        cmd = [shutil.which("nvidia-smi"), "--query-gpu=" + ",".join(fields), "--format=csv"]
        subprocess.run(cmd, capture_output=True, timeout=60)
        smi, _cpu = timed(lambda: subprocess.run(cmd, capture_output=True, timeout=60, check=True), 15)
        smi_med = statistics.median(smi)
        rows.append((f"nvidia-smi --query-gpu ({len(fields)} fields)", ms(smi_med), ms(p95(smi)), "",
                     f"nvidia-smi/scrape = {smi_med / scrape_med:.1f}x (target >= 5x)"))
        print("nvidia-smi fields: " + ",".join(fields))
    else:
        rows.append(("nvidia-smi", "n/a", "", "", "not found"))
    table(rows, ("measurement", "median ms", "p95 ms", "CPU ms/scrape", "ratio"))

    # background sampler round (GPM + PCIe throughput) and per-function costs
    rig.recorder.calls = []
    rig.recorder.recording = True
    sampler_walls, _ = timed(rig.sampler.sample_once, 5)
    rig.recorder.recording = False
    print(f"\nbackground sampler round (GPM + PCIe), not part of a scrape: median "
          f"{statistics.median(sampler_walls) * 1000:.1f} ms; gpm values: {rig.sampler.snapshot()}")
    costs = per_function_costs(real["calls"] + rig.recorder.calls[: len(rig.recorder.calls) // 5])
    table([(name, str(k), f"{each * 1e6:9.1f}") for name, k, each in costs], ("NVML function", "calls", "us each"))
    rig.close()
    pynvml.nvmlShutdown()
    return True


if __name__ == "__main__":
    main()

"""Synthetic exporter histories for the rightsizer, written as OpenMetrics and imported with promtool.

Shared by tests/test_rightsize*.py and the rightsizing benchmark. Each subject is a handful of series
with the exact names and labels of MLScope's exporters (SageMaker exporter for endpoints; GPU exporter
`gpu_*` and host exporter `node_*` joined by the `instance` label for hosts), one sample per `res`
seconds, values given as functions of the Unix time t. Pure standard library, deterministic.

    series = sagemaker_variant("llm", "ml.g5.xlarge", 1, 1.408, start, cpu=const(0.1), ...)
    write_tsdb(tsdb_dir, work_dir, series, start, end)          # promtool, one 384 h block at most
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

DAY = 86400
GIB = 1024 ** 3
Fn = Callable[[float], float | None]
# A fixed "now" for the tests: 2026-11-01T00:00:00Z. Histories end one resolution step before it.
END = 1793491200


@dataclass
class Series:
    family: str  # the metric family (a counter's family has no _total)
    type: str  # gauge | counter | summary
    sample: str  # the sample name
    labels: dict[str, str]
    value: Fn  # gauges: the value at t; counters: the rate per second at t (integrated here)
    start: float  # first sample at or after this time
    end: float | None = None  # no sample at or after this time


def const(v: float) -> Fn:
    return lambda t: v


def diurnal(low: float, high: float) -> Fn:
    """low at 02:00 UTC, high at 14:00 UTC, a sine in between."""
    return lambda t: low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * (t / DAY - 8 / 24)))


def spike(base: Fn, value: float, start: float, hours: float) -> Fn:
    """`base`, except `value` for `hours` from `start` (e.g. a monthly batch job)."""
    return lambda t: value if start <= t < start + hours * 3600 else base(t)


def sagemaker_variant(endpoint: str, instance_type: str, instances: int, price: float, start: float, *,
                      cpu: Fn, memory: Fn, gpu: Fn | None = None, gpu_memory: Fn | None = None,
                      requests: Fn = const(0.0), latency: Fn | None = None, errors_5xx: Fn | None = None,
                      region: str = "us-east-1", variant: str = "AllTraffic",
                      account: str | None = None) -> list[Series]:
    """The SageMaker exporter's series for one variant. `requests` is req/s for the whole variant;
    `latency` is the p99 model latency in seconds (None while there is no traffic, as CloudWatch);
    `errors_5xx` is 5xx responses per second."""
    labels = {**({"account": account} if account else {}), "region": region, "endpoint": endpoint, "variant": variant}
    out = [Series("sagemaker_variant_info", "gauge", "sagemaker_variant_info",
                  {**labels, "instance_type": instance_type}, const(1), start),
           Series("sagemaker_variant_instances", "gauge", "sagemaker_variant_instances", labels, const(instances),
                  start),
           Series("sagemaker_variant_hourly_cost_dollars", "gauge", "sagemaker_variant_hourly_cost_dollars",
                  {**labels, "instance_type": instance_type}, const(round(price * instances, 6)), start),
           Series("sagemaker_invocations", "counter", "sagemaker_invocations_total", labels, requests, start)]
    for name, fn in (("cpu", cpu), ("memory", memory), ("gpu", gpu), ("gpu_memory", gpu_memory)):
        if fn is not None:
            metric = f"sagemaker_instance_{name}_utilization_ratio"
            out.append(Series(metric, "gauge", metric, labels, fn, start))
    if errors_5xx is not None:
        out.append(Series("sagemaker_invocation_5xx_errors", "counter", "sagemaker_invocation_5xx_errors_total", labels,
                          errors_5xx, start))
    if latency is not None:
        out.append(Series("sagemaker_model_latency_seconds", "summary", "sagemaker_model_latency_seconds",
                          {**labels, "quantile": "0.99"},
                          lambda t: latency(t) if requests(t) > 0 else None, start))
    return out


def host(instance: str, instance_type: str, price: float, start: float, *, vcpus: int, memory_gib: float,
         cpu: Fn, memory: Fn, gpus: int = 0, gpu_model: str = "", gpu_memory_gib: float = 0.0,
         gpu: Fn | None = None, gpu_memory: Fn | None = None) -> list[Series]:
    """The host exporter's and the GPU exporter's series for one machine, joined by `instance`.
    `cpu`, `memory`, `gpu`, `gpu_memory` are utilization ratios (the same on every CPU/GPU)."""
    node = {"job": "host", "instance": instance}
    out = [Series("mlscope_host_hourly_cost_dollars", "gauge", "mlscope_host_hourly_cost_dollars",
                  {**node, "instance_type": instance_type}, const(price), start),
           Series("node_memory_MemTotal_bytes", "gauge", "node_memory_MemTotal_bytes", node,
                  const(memory_gib * GIB), start),
           Series("node_memory_MemAvailable_bytes", "gauge", "node_memory_MemAvailable_bytes", node,
                  lambda t: (1 - memory(t)) * memory_gib * GIB, start)]
    out += [Series("node_cpu_seconds", "counter", "node_cpu_seconds_total", {**node, "cpu": str(c), "mode": "idle"},
                   lambda t: 1 - cpu(t), start) for c in range(vcpus)]
    for g in range(gpus):
        labels = {"job": "gpu", "instance": instance, "gpu": str(g), "uuid": f"GPU-{instance}-{g}"}
        out += [Series("gpu_info", "gauge", "gpu_info", {**labels, "model": gpu_model, "driver_version": "550.127",
                                                         "pci_bus_id": f"00000000:{16 + g:02X}:00.0"}, const(1), start),
                Series("gpu_utilization_ratio", "gauge", "gpu_utilization_ratio", labels, gpu, start),
                Series("gpu_memory_total_bytes", "gauge", "gpu_memory_total_bytes", labels,
                       const(gpu_memory_gib * GIB), start),
                Series("gpu_memory_used_bytes", "gauge", "gpu_memory_used_bytes", labels,
                       lambda t: gpu_memory(t) * gpu_memory_gib * GIB, start)]
    return out


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def write_openmetrics(path: Path, series: Iterable[Series], end: float, res: int | dict[str, int] = 60) -> int:
    """All series as one OpenMetrics file (families contiguous); returns the number of samples.
    `res` is the step in seconds, or one per series type (e.g. {"gauge": 300, "counter": 150, "summary": 300})."""
    by_family: dict[str, list[Series]] = {}
    for s in series:
        by_family.setdefault(s.family, []).append(s)
    written = 0
    with open(path, "w", buffering=1 << 20) as out:
        for family, members in by_family.items():
            out.write(f"# TYPE {family} {members[0].type}\n")
            for s in members:
                step = res[s.type] if isinstance(res, dict) else res
                prefix = s.sample + _labels(s.labels) + " "
                first = math.ceil(s.start / step) * step
                stop = min(end, s.end) if s.end is not None else end
                lines, total = [], 0.0
                for t in range(int(first), int(stop), step):
                    v = s.value(t)
                    if v is None:
                        continue
                    if s.type == "counter":
                        total += v * step
                        v = total
                    lines.append(f"{prefix}{v:.9g} {t}\n")
                written += len(lines)
                out.write("".join(lines))
        out.write("# EOF\n")
    return written


def write_tsdb(tsdb_dir: Path, work: Path, series: Iterable[Series], end: float = END, res: int = 60) -> int:
    """Import the series into `tsdb_dir` with promtool (blocks of up to 384 h: fast, see ARCHITECTURE.md)."""
    path = work / "rightsize-history.om"
    samples = write_openmetrics(path, series, end, res)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=384h",
                    str(path), str(tsdb_dir)], check=True, capture_output=True, timeout=900)
    path.unlink()
    return samples


# ---- the test fleet: one subject per behaviour the tests check (numbers worked out in the tests) ----

def spiky_latency(t_rate: Fn, instances: int, knee: float, slope: float, base: float) -> Fn:
    """p99 latency flat at `base` up to `knee` requests/s per instance, then rising by `slope` s per req/s."""
    return lambda t: base + max(0.0, t_rate(t) / instances - knee) * slope


def test_fleet(end: float = END) -> list[Series]:
    two_weeks = end - 15 * DAY
    spiky_rate = diurnal(10, 90)
    return [
        # Idle GPU endpoint: a model loaded on an A10G, no traffic.
        *sagemaker_variant("idle-gpu", "ml.g5.xlarge", 1, 1.408, two_weeks, cpu=const(0.02), memory=const(0.10),
                           gpu=const(0.01), gpu_memory=const(0.30)),
        # Static 2 instances; latency rises above 31.5 req/s per instance and the diurnal peak is 45.
        *sagemaker_variant("spiky", "ml.g5.xlarge", 2, 1.408, two_weeks,
                           cpu=lambda t: 0.1 + spiky_rate(t) / 2 / 200, memory=const(0.4),
                           gpu=lambda t: spiky_rate(t) / 2 / 60, gpu_memory=const(0.5), requests=spiky_rate,
                           latency=spiky_latency(spiky_rate, 2, 31.5, 0.05, 0.05)),
        # Well sized: CPU peaks at 70 %, memory 60 %, flat latency.
        *sagemaker_variant("steady", "ml.c5.xlarge", 2, 0.204, two_weeks, cpu=diurnal(0.35, 0.70),
                           memory=const(0.6), requests=diurnal(20, 40), latency=const(0.03),
                           errors_5xx=const(0.0), account="123456789012"),
        # GPU memory 75 % of 24 GB (18 GB): a 16 GB T4 cannot hold it, though the GPU is 20 % busy.
        *sagemaker_variant("llm-24gb", "ml.g5.xlarge", 1, 1.408, two_weeks, cpu=const(0.15), memory=const(0.5),
                           gpu=diurnal(0.10, 0.20), gpu_memory=const(0.75), requests=diurnal(1, 5),
                           latency=const(0.4)),
        # CPU 10 %, but a 6-hour batch at 95 % 25 days ago: only a 32-day lookback sees it.
        *sagemaker_variant("batch-monthly", "ml.m5.2xlarge", 2, 0.461, end - 33 * DAY,
                           cpu=spike(const(0.10), 0.95, end - 25 * DAY, 6), memory=const(0.3),
                           requests=const(5.0), latency=const(0.1)),
        # Created 20 hours ago.
        *sagemaker_variant("new-endpoint", "ml.m5.xlarge", 1, 0.23, end - 20 * 3600, cpu=const(0.5),
                           memory=const(0.5), requests=const(2.0), latency=const(0.05)),
        # An instance type the catalogue does not know.
        *sagemaker_variant("legacy", "ml.m4.xlarge", 1, 0.28, two_weeks, cpu=const(0.3), memory=const(0.3),
                           requests=const(1.0), latency=const(0.05)),
        # Idle p3.8xlarge: 4 V100s at 3 %, 2 of 16 GiB used on each, CPU 5 %, memory 10 % of 244 GiB.
        *host("gpu-idle-host", "p3.8xlarge", 12.24, two_weeks, vcpus=32, memory_gib=244, cpu=const(0.05),
              memory=const(0.10), gpus=4, gpu_model="Tesla V100-SXM2-16GB", gpu_memory_gib=16,
              gpu=const(0.03), gpu_memory=const(0.125)),
        # A CPU host at 92 %.
        *host("cpu-busy-host", "m6i.xlarge", 0.192, two_weeks, vcpus=4, memory_gib=16, cpu=const(0.92),
              memory=const(0.5)),
    ]

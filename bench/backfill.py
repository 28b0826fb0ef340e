"""Synthetic 30-day history for the dashboard-speed benchmark, and the tools to load it.

- `write_history()` writes OpenMetrics text for a synthetic fleet that follows the metric contracts
  of ARCHITECTURE.md (100 SageMaker endpoints, 8 GPU hosts x 8 GPUs, 16 hosts, `up` per target) and
  turns it into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, one file per block
  window so promtool never holds more than one window in memory.
- `Prometheus` runs the real server on 127.0.0.1 and always stops it.
- `backfill_rules()` evaluates the recording rules over the history with
  `promtool tsdb create-blocks-from rules`, level by level: a rule that reads another rule's output
  is backfilled only after the rule it reads has been loaded into Prometheus.

Pure standard library (the venv has no numpy); deterministic (seeded).
"""

from __future__ import annotations

import functools
import http.client
import json
import math
import random
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import yaml

from helpers import Process, free_port

DAY = 86400
# Block window of the history (and of the rule blocks): 54 h is the largest block a Prometheus with
# 60 d retention compacts to (max block = retention / 10 = 6 d; block ranges 2h, 6h, 18h, 54h).
BLOCK_SECONDS = 54 * 3600


# --------------------------------------------------------------------------- the fleet

REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
MODELS = ("llama3-8b", "mistral-7b", "bert-ner", "clip-embed", "whisper-small", "xgb-fraud", "resnet50",
          "t5-summarize", "sdxl-turbo", "rec-ranker")
SAGEMAKER_TYPES = {  # instance type: (dollars per instance-hour, has GPU)
    "ml.g5.xlarge": (1.408, True), "ml.g5.2xlarge": (1.515, True), "ml.g5.12xlarge": (7.09, True),
    "ml.p4d.24xlarge": (37.688, True), "ml.c5.xlarge": (0.204, False), "ml.m5.xlarge": (0.23, False),
    "ml.inf2.xlarge": (0.99, False), "ml.c6i.2xlarge": (0.408, False),
}
GPU_HOST_TYPE, GPU_HOST_PRICE = "p5.48xlarge", 98.32
CPU_HOST_TYPE, CPU_HOST_PRICE = "m6i.4xlarge", 0.768
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
CPU_MODE_SHARE = {"user": 0.55, "nice": 0.01, "system": 0.18, "iowait": 0.04, "irq": 0.01, "softirq": 0.03,
                  "steal": 0.005}
THROTTLE_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown")
MOUNTS = (("/dev/nvme0n1p1", "ext4", "/"), ("/dev/nvme1n1", "xfs", "/data"), ("/dev/nvme0n1p15", "vfat", "/boot/efi"))


def _labels(**kv: object) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


@dataclass
class Series:
    """One time series: `prefix` is 'name{labels} '; `value(i, t)` gives the sample or None (no sample)."""

    prefix: str
    value: Callable[[int, int], float | None]
    fmt: str = "%.6g"


@dataclass
class Family:
    name: str
    type: str  # gauge | counter | summary
    series: list[Series] = field(default_factory=list)


class Counter:
    """A monotonically increasing counter fed by per-step increments."""

    def __init__(self, start: float = 0.0):
        self.total = start

    def add(self, inc: float) -> float:
        if inc > 0:
            self.total += inc
        return self.total


class Fleet:
    """The synthetic fleet; values are functions of the sample index so the history is one pass."""

    def __init__(self, start: int, end: int, resolution: int, seed: int = 20261123):
        self.start, self.end, self.res = start, end, resolution
        self.rng = random.Random(seed)
        self.noise = [self.rng.gauss(0.0, 1.0) for _ in range(9973)]  # prime length: cheap varied noise
        self.families: dict[str, Family] = {}
        self.targets: list[tuple[str, str]] = []  # (job, instance)
        self.down: dict[tuple[str, str], tuple[int, int]] = {}  # target -> (from, to) with no scrape
        self._build()

    # -- helpers
    def fam(self, name: str, type_: str) -> Family:
        f = self.families.get(name)
        if f is None:
            f = self.families[name] = Family(name, type_)
        return f

    def add(self, family: str, type_: str, sample_name: str, labels: dict, fn, fmt: str = "%.6g"):
        self.fam(family, type_).series.append(Series(f"{sample_name}{_labels(**labels)} ", fn, fmt))

    def n(self, i: int, salt: int) -> float:
        return self.noise[(i * 7 + salt * 131) % len(self.noise)]

    @staticmethod
    @functools.lru_cache(maxsize=1 << 16)
    def diurnal(t: int, phase_h: float = 0.0) -> float:
        day = math.sin(2 * math.pi * ((t / 3600.0 + phase_h) / 24.0 - 0.35))
        week = 0.85 if ((t // DAY) + 3) % 7 in (5, 6) else 1.0  # quieter weekends
        return max(0.05, (1.0 + 0.5 * day) * week)

    def is_down(self, job: str, instance: str, t: int) -> bool:
        span = self.down.get((job, instance))
        return span is not None and span[0] <= t < span[1]

    # -- the fleet
    def _build(self) -> None:
        rng = self.rng
        span = self.end - self.start
        # A GPU host and a CPU host lose their exporter for a few hours: `up` 0, no samples.
        self.down[("gpu", "mlhost-07")] = (self.start + int(span * 0.6), self.start + int(span * 0.6) + 3 * 3600)
        self.down[("host", "mlhost-12")] = (self.start + int(span * 0.3), self.start + int(span * 0.3) + 5 * 3600)
        self._sagemaker(rng)
        self._gpus(rng)
        self._hosts(rng)
        self._stack()

    def _sagemaker(self, rng: random.Random) -> None:
        job, inst = "sagemaker", "mlscope-sagemaker"
        self.targets.append((job, inst))
        types = list(SAGEMAKER_TYPES)
        span = self.end - self.start
        for e in range(100):
            region = REGIONS[e % len(REGIONS)]
            endpoint = f"{MODELS[e % len(MODELS)]}-{e:03d}"
            itype = types[(e * 5) % len(types)]
            price, has_gpu = SAGEMAKER_TYPES[itype]
            base_rps = 10 ** rng.uniform(-1.0, 2.3)
            base_lat = rng.uniform(0.015, 0.45) * (1.6 if has_gpu and "p4d" in itype else 1.0)
            phase = {"us-east-1": 0.0, "us-west-2": 3.0, "eu-west-1": -5.0}[region]
            # A few endpoints have an incident: a 5xx burst for some hours.
            incident = None
            if e % 17 == 3:
                at = self.start + int(span * rng.uniform(0.2, 0.95))
                incident = (at, at + int(rng.uniform(1, 6) * 3600), rng.uniform(0.02, 0.25))
            err5_base = 10 ** rng.uniform(-5, -3.2)
            tags = {"tag_team": ("search", "ads", "vision", "speech")[e % 4]}
            if e % 2 == 0:
                tags["tag_mlscope_slo"] = ("0.999", "0.99", "0.9995")[e % 3]
            if e % 5 == 0:
                tags["tag_mlscope_latency_objective_seconds"] = "0.5"
            if e % 7 == 0:
                tags["tag_mlscope_budget_dollars_per_hour"] = "%.0f" % (price * 6)
            common_e = dict(region=region, endpoint=endpoint, job=job, instance=inst)
            self.add("sagemaker_endpoint_info", "gauge", "sagemaker_endpoint_info",
                     dict(region=region, endpoint=endpoint, status="InService", **tags, job=job, instance=inst),
                     lambda i, t: 1)
            variants = [("AllTraffic", 1.0)] if e % 3 else [("blue", 0.9), ("green", 0.1)]
            for vi, (variant, share) in enumerate(variants):
                self._variant(e * 2 + vi, common_e, variant, share, itype, price, has_gpu, base_rps * share,
                              base_lat * (1.0 + 0.15 * vi), phase, incident, err5_base)

    def _variant(self, k, common_e, variant, share, itype, price, has_gpu, rps, lat, phase, incident, err5):
        L = dict(region=common_e["region"], endpoint=common_e["endpoint"], variant=variant,
                 job=common_e["job"], instance=common_e["instance"])
        res = self.res
        base_instances = max(1, int(1 + (k % 4) * share + 0.5))

        memo: dict[int, float] = {}

        def load(i, t):
            v = memo.get(i)
            if v is None:
                if len(memo) > 20000:
                    memo.clear()
                v = memo[i] = self.diurnal(t, phase) * (1.0 + 0.08 * self.n(i, k))
            return v

        def invocations_inc(i, t):
            return rps * load(i, t) * res

        def err5_ratio(t):
            if incident and incident[0] <= t < incident[1]:
                return incident[2]
            return err5

        inv, e4, e5, em = Counter(), Counter(), Counter(), Counter()
        ms, mc, os_, oc = Counter(), Counter(), Counter(), Counter()
        self.add("sagemaker_invocations", "counter", "sagemaker_invocations_total", L,
                 lambda i, t: int(inv.add(invocations_inc(i, t))), "%d")
        self.add("sagemaker_invocation_4xx_errors", "counter", "sagemaker_invocation_4xx_errors_total", L,
                 lambda i, t: int(e4.add(invocations_inc(i, t) * 0.004 * (1 + 0.5 * self.n(i, k + 1)))), "%d")
        self.add("sagemaker_invocation_5xx_errors", "counter", "sagemaker_invocation_5xx_errors_total", L,
                 lambda i, t: int(e5.add(invocations_inc(i, t) * err5_ratio(t) * (1 + 0.3 * self.n(i, k + 2)))),
                 "%d")
        self.add("sagemaker_invocation_model_errors", "counter", "sagemaker_invocation_model_errors_total", L,
                 lambda i, t: int(em.add(invocations_inc(i, t) * err5_ratio(t) * 0.3)), "%d")

        def latency(i, t, q):
            return lat * (0.8 + 0.3 * load(i, t)) * q * (1 + 0.05 * self.n(i, k + 3))

        for name, base, s_ctr, c_ctr in (("sagemaker_model_latency_seconds", 1.0, ms, mc),
                                         ("sagemaker_overhead_latency_seconds", 0.012 / max(lat, 1e-3), os_, oc)):
            for q, mult in (("0.5", 1.0), ("0.9", 1.9), ("0.99", 3.4)):
                self.add(name, "summary", name, {**L, "quantile": q},
                         lambda i, t, mult=mult, base=base: latency(i, t, mult * base), "%.5g")
            self.add(name, "summary", name + "_sum", L,
                     lambda i, t, base=base, s_ctr=s_ctr: s_ctr.add(invocations_inc(i, t) * latency(i, t, 1.15 * base)),
                     "%.6f")
            self.add(name, "summary", name + "_count", L,
                     lambda i, t, c_ctr=c_ctr: int(c_ctr.add(invocations_inc(i, t))), "%d")

        def instances(i, t):
            return max(1, round(base_instances * (0.6 + 0.5 * self.diurnal(t, phase))))

        util = {"cpu": 0.35, "memory": 0.55, "disk": 0.2}
        if has_gpu:
            util.update(gpu=0.5, gpu_memory=0.7)
        for res_name, u in util.items():
            self.add(f"sagemaker_instance_{res_name}_utilization_ratio", "gauge",
                     f"sagemaker_instance_{res_name}_utilization_ratio", L,
                     lambda i, t, u=u: min(1.0, max(0.0, u * (0.5 + 0.5 * load(i, t)) + 0.03 * self.n(i, k + 5))),
                     "%.4f")
        self.add("sagemaker_variant_instances", "gauge", "sagemaker_variant_instances", L, instances, "%d")
        self.add("sagemaker_variant_desired_instances", "gauge", "sagemaker_variant_desired_instances", L,
                 instances, "%d")
        self.add("sagemaker_variant_info", "gauge", "sagemaker_variant_info", {**L, "instance_type": itype},
                 lambda i, t: 1, "%d")
        self.add("sagemaker_variant_hourly_cost_dollars", "gauge", "sagemaker_variant_hourly_cost_dollars",
                 {**L, "instance_type": itype}, lambda i, t: price * instances(i, t), "%.4f")
        self.add("sagemaker_data_timestamp_seconds", "gauge", "sagemaker_data_timestamp_seconds", L,
                 lambda i, t: t - 240 - (t % 60), "%d")

    def _gpus(self, rng: random.Random) -> None:
        for h in range(8):
            host = f"mlhost-{h + 1:02d}"
            self.targets.append(("gpu", host))
            for g in range(8):
                k = h * 8 + g
                uuid = "GPU-%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                          rng.getrandbits(16), rng.getrandbits(16),
                                                          rng.getrandbits(48))
                L = dict(gpu=str(g), uuid=uuid, job="gpu", instance=host)
                busy = 0.0 if k % 9 == 4 else (0.03 if k % 11 == 2 else rng.uniform(0.45, 0.95))
                down = ("gpu", host)
                self._gpu(k, L, busy, down)

    def _gpu(self, k, L, busy, down):
        total = 85899345920

        def present(t):
            return not self.is_down(*down, t)

        memo: dict[int, float | None] = {}

        def util(i, t):
            v = memo.get(i, memo)
            if v is memo:
                if len(memo) > 20000:
                    memo.clear()
                v = memo[i] = util_(i, t)
            return v

        def util_(i, t):
            if not present(t):
                return None
            if busy < 0.05:
                return max(0.0, busy + 0.01 * abs(self.n(i, k)))
            return min(1.0, max(0.0, busy * (0.7 + 0.3 * self.diurnal(t)) + 0.05 * self.n(i, k)))

        def g(fn):
            return lambda i, t: fn(i, t) if present(t) else None

        energy = Counter(1e9 * (1 + k % 5))
        power = lambda i, t: 70 + 620 * (util(i, t) or 0) + 5 * self.n(i, k + 1)  # noqa: E731
        self.add("gpu_info", "gauge", "gpu_info",
                 {**L, "model": "NVIDIA H100 80GB HBM3", "driver_version": "580.65.06",
                  "pci_bus_id": "00000000:%02X:00.0" % (0x18 + int(L["gpu"]) * 0x10)}, g(lambda i, t: 1), "%d")
        self.add("gpu_up", "gauge", "gpu_up", L, g(lambda i, t: 1), "%d")
        self.add("gpu_utilization_ratio", "gauge", "gpu_utilization_ratio", L, util, "%.4f")
        self.add("gpu_memory_copy_utilization_ratio", "gauge", "gpu_memory_copy_utilization_ratio", L,
                 g(lambda i, t: 0.4 * (util(i, t) or 0)), "%.4f")
        used = g(lambda i, t: int(total * min(0.98, 0.02 + (0.9 if busy > 0.05 else 0.0) * (0.9 + 0.05 * self.n(i, k)))))
        self.add("gpu_memory_used_bytes", "gauge", "gpu_memory_used_bytes", L, used, "%d")
        self.add("gpu_memory_total_bytes", "gauge", "gpu_memory_total_bytes", L, g(lambda i, t: total), "%d")
        self.add("gpu_memory_reserved_bytes", "gauge", "gpu_memory_reserved_bytes", L, g(lambda i, t: 566231040), "%d")
        self.add("gpu_temperature_celsius", "gauge", "gpu_temperature_celsius", L,
                 g(lambda i, t: 32 + 45 * (util(i, t) or 0) + self.n(i, k + 2)), "%.0f")
        self.add("gpu_power_usage_watts", "gauge", "gpu_power_usage_watts", L, g(power), "%.1f")
        self.add("gpu_power_limit_watts", "gauge", "gpu_power_limit_watts", L, g(lambda i, t: 700), "%d")
        self.add("gpu_energy_consumed_joules", "counter", "gpu_energy_consumed_joules_total", L,
                 g(lambda i, t: energy.add(power(i, t) * self.res)), "%.0f")
        self.add("gpu_sm_clock_hertz", "gauge", "gpu_sm_clock_hertz", L,
                 g(lambda i, t: 1980e6 if (util(i, t) or 0) > 0.1 else 345e6), "%.0f")
        self.add("gpu_memory_clock_hertz", "gauge", "gpu_memory_clock_hertz", L, g(lambda i, t: 2619e6), "%.0f")
        self.add("gpu_sm_clock_max_hertz", "gauge", "gpu_sm_clock_max_hertz", L, g(lambda i, t: 1980e6), "%.0f")
        for reason in THROTTLE_REASONS:
            self.add("gpu_clock_throttle_active", "gauge", "gpu_clock_throttle_active", {**L, "reason": reason},
                     g(lambda i, t, r=reason: 1 if r == "sw_power_cap" and (util(i, t) or 0) > 0.93 else 0), "%d")
        ecc = Counter()
        self.add("gpu_ecc_errors", "counter", "gpu_ecc_errors_total", {**L, "type": "corrected"},
                 g(lambda i, t: ecc.add(1 if k == 13 and self.n(i, k) > 2.5 else 0)), "%d")
        self.add("gpu_ecc_errors", "counter", "gpu_ecc_errors_total", {**L, "type": "uncorrected"},
                 g(lambda i, t: 0), "%d")
        for rtype in ("correctable", "uncorrectable", "pending", "failure"):
            self.add("gpu_remapped_rows", "gauge", "gpu_remapped_rows", {**L, "type": rtype},
                     g(lambda i, t, r=rtype: 1 if (k == 13 and r == "correctable") else 0), "%d")
        self.add("gpu_pcie_replay_errors", "counter", "gpu_pcie_replay_errors_total", L, g(lambda i, t: 0), "%d")
        if k == 21:
            self.add("gpu_xid_errors", "counter", "gpu_xid_errors_total", {**L, "xid": "79"},
                     g(lambda i, t: 1 if t > self.start + 20 * DAY else 0), "%d")
        for d in ("transmit", "receive"):
            self.add(f"gpu_pcie_{d}_bytes_per_second", "gauge", f"gpu_pcie_{d}_bytes_per_second", L,
                     g(lambda i, t: 2e9 * (util(i, t) or 0) + 1e6), "%.4g")
        for name, f in (("sm_active", 0.95), ("sm_occupancy", 0.6), ("tensor_active", 0.5), ("dram_active", 0.45)):
            self.add(f"gpu_{name}_ratio", "gauge", f"gpu_{name}_ratio", L,
                     g(lambda i, t, f=f: f * (util(i, t) or 0)), "%.4f")
        if busy > 0.05:
            self.add("gpu_process_memory_used_bytes", "gauge", "gpu_process_memory_used_bytes",
                     {**L, "pid": str(4000 + k), "process": "python3", "container": f"trainer-{k // 8}"},
                     lambda i, t: (used(i, t) or 0) - 600 * 2**20 if present(t) else None, "%d")

    def _hosts(self, rng: random.Random) -> None:
        for h in range(16):
            host = f"mlhost-{h + 1:02d}"
            self.targets.append(("host", host))
            gpu_host = h < 8
            self._host(h, host, gpu_host)

    def _host(self, h, host, gpu_host):
        L = dict(job="host", instance=host)
        down = ("host", host)
        ncpu = 4
        busy = 0.25 + 0.05 * (h % 7)
        boot = self.start - (3 + h) * DAY

        def g(fn):
            return lambda i, t: None if self.is_down(*down, t) else fn(i, t)

        memo: dict[int, float] = {}

        def cpu_busy(i, t):
            v = memo.get(i)
            if v is None:
                if len(memo) > 20000:
                    memo.clear()
                v = memo[i] = min(0.98, busy * self.diurnal(t) * (1 + 0.1 * self.n(i, h)))
            return v

        for c in range(ncpu):
            for mode in CPU_MODES:
                ctr = Counter((self.start - boot) * (0.7 if mode == "idle" else 0.3 * CPU_MODE_SHARE[mode]))
                if mode == "idle":
                    fn = lambda i, t, ctr=ctr: ctr.add((1 - cpu_busy(i, t)) * self.res)  # noqa: E731
                else:
                    fn = lambda i, t, ctr=ctr, s=CPU_MODE_SHARE[mode]: ctr.add(cpu_busy(i, t) * s * self.res)  # noqa
                self.add("node_cpu_seconds", "counter", "node_cpu_seconds_total", {**L, "cpu": str(c), "mode": mode},
                         g(fn), "%.2f")
        for name, f in (("node_load1", 1.0), ("node_load5", 0.95), ("node_load15", 0.9)):
            self.add(name, "gauge", name, L, g(lambda i, t, f=f: ncpu * cpu_busy(i, t) * f), "%.2f")
        mem = 64 * 2**30
        for field_, fn in (("MemTotal", lambda i, t: mem),
                           ("MemAvailable", lambda i, t: mem * (0.6 - 0.3 * cpu_busy(i, t))),
                           ("MemFree", lambda i, t: mem * (0.3 - 0.15 * cpu_busy(i, t))),
                           ("Buffers", lambda i, t: 512 * 2**20), ("Cached", lambda i, t: mem * 0.25),
                           ("SwapTotal", lambda i, t: 0), ("SwapFree", lambda i, t: 0)):
            self.add(f"node_memory_{field_}_bytes", "gauge", f"node_memory_{field_}_bytes", L, g(fn), "%.0f")
        for m, (dev, fstype, mnt) in enumerate(MOUNTS):
            size = (200 * 2**30, 2 * 2**40, 512 * 2**20)[m]
            fill0 = (0.4 + 0.03 * h, 0.3 + 0.04 * h, 0.1)[m]
            fl = dict(device=dev, fstype=fstype, mountpoint=mnt)
            avail = lambda i, t, size=size, fill0=fill0: size * (1 - min(0.97, fill0 + 0.1 * (t - self.start) / (30 * DAY)))  # noqa
            self.add("node_filesystem_size_bytes", "gauge", "node_filesystem_size_bytes", {**L, **fl},
                     g(lambda i, t, size=size: size), "%.0f")
            self.add("node_filesystem_avail_bytes", "gauge", "node_filesystem_avail_bytes", {**L, **fl}, g(avail),
                     "%.0f")
            self.add("node_filesystem_free_bytes", "gauge", "node_filesystem_free_bytes", {**L, **fl},
                     g(lambda i, t, a=avail: a(i, t) + 2**30), "%.0f")
            self.add("node_filesystem_readonly", "gauge", "node_filesystem_readonly", {**L, **fl},
                     g(lambda i, t: 0), "%d")
        for d, dev in enumerate(("nvme0n1", "nvme1n1")):
            for name, per_s in (("node_disk_read_bytes", 4e6), ("node_disk_written_bytes", 9e6),
                                ("node_disk_reads_completed", 300), ("node_disk_writes_completed", 700),
                                ("node_disk_io_time_seconds", 0.05)):
                ctr = Counter()
                self.add(name, "counter", name + "_total", {**L, "device": dev},
                         g(lambda i, t, c=ctr, p=per_s: c.add(p * (1 + d) * cpu_busy(i, t) * self.res)), "%.0f"
                         if per_s > 1 else "%.3f")
        for dev, scale in (("lo", 0.05), ("eth0", 1.0)):
            for name, per_s in (("node_network_receive_bytes", 2.5e7 * (8 if gpu_host else 1)),
                                ("node_network_transmit_bytes", 1.5e7 * (8 if gpu_host else 1)),
                                ("node_network_receive_errs", 0.0), ("node_network_transmit_errs", 0.0)):
                ctr = Counter()
                self.add(name, "counter", name + "_total", {**L, "device": dev},
                         g(lambda i, t, c=ctr, p=per_s * scale: c.add(p * self.diurnal(t) * self.res)), "%.0f")
        self.add("node_boot_time_seconds", "gauge", "node_boot_time_seconds", L, g(lambda i, t: boot), "%d")
        self.add("node_time_seconds", "gauge", "node_time_seconds", L, g(lambda i, t: t), "%d")
        self.add("node_uname_info", "gauge", "node_uname_info",
                 {**L, "sysname": "Linux", "release": "6.1.0-28-amd64", "nodename": host, "machine": "x86_64"},
                 g(lambda i, t: 1), "%d")
        itype, price = (GPU_HOST_TYPE, GPU_HOST_PRICE) if gpu_host else (CPU_HOST_TYPE, CPU_HOST_PRICE)
        self.add("mlscope_host_hourly_cost_dollars", "gauge", "mlscope_host_hourly_cost_dollars",
                 {**L, "instance_type": itype}, g(lambda i, t: price), "%.4f")

    def _stack(self) -> None:
        collectors = {"host": ("host",), "gpu": ("nvml",), "sagemaker": ("cloudwatch", "sagemaker")}
        for job, inst in list(self.targets):
            for c in collectors[job]:
                self.add("mlscope_collector_up", "gauge", "mlscope_collector_up",
                         dict(collector=c, job=job, instance=inst),
                         lambda i, t, j=job, n=inst: None if self.is_down(j, n, t) else 1, "%d")
            self.add("mlscope_build_info", "gauge", "mlscope_build_info", dict(version="0.1.0", job=job, instance=inst),
                     lambda i, t, j=job, n=inst: None if self.is_down(j, n, t) else 1, "%d")
        for region in REGIONS:
            ctr = Counter()
            self.add("mlscope_cloudwatch_metrics_requested", "counter", "mlscope_cloudwatch_metrics_requested_total",
                     dict(region=region, job="sagemaker", instance="mlscope-sagemaker"),
                     lambda i, t, c=ctr: c.add(33 * 16 * self.res / 60), "%.0f")
        self.targets += [("prometheus", "prometheus"), ("alertmanager", "alertmanager")]
        for job, inst in self.targets:
            self.add("up", "gauge", "up", dict(job=job, instance=inst),
                     lambda i, t, j=job, n=inst: 0 if self.is_down(j, n, t) else 1, "%d")

    def series_count(self) -> int:
        return sum(len(f.series) for f in self.families.values())

    # -- output
    def write_openmetrics(self, path: Path, t0: int, t1: int, first_index: int) -> int:
        """Samples with t0 <= t < t1 (on the resolution grid) as one OpenMetrics file; returns samples written."""
        times = list(range(t0, t1, self.res))
        idx = list(range(first_index, first_index + len(times)))
        suffixes = [f" {t}\n" for t in times]
        pairs = list(zip(idx, times))
        written = 0
        with open(path, "w", buffering=1 << 20) as out:
            for fam in self.families.values():
                out.write(f"# TYPE {fam.name} {fam.type}\n")
                for s in fam.series:
                    fn, fmt, prefix = s.value, s.fmt, s.prefix
                    lines = []
                    for (i, t), suf in zip(pairs, suffixes):
                        v = fn(i, t)
                        if v is not None:
                            lines.append(prefix + (fmt % v) + suf)
                    written += len(lines)
                    out.write("".join(lines))
            out.write("# EOF\n")
        return written


def write_history(tsdb_dir: Path, work: Path, start: int, end: int, resolution: int,
                  log: Callable[[str], None] = print) -> dict:
    """Generate the fleet's history [start, end) and import it into `tsdb_dir` as blocks. Returns stats."""
    fleet = Fleet(start, end, resolution)
    t_gen = t_imp = 0.0
    samples = 0
    first = start - start % resolution
    if first < start:
        first += resolution
    # Split at block boundaries so each promtool run writes exactly one block.
    bounds = [first]
    b = (first // BLOCK_SECONDS + 1) * BLOCK_SECONDS
    while b < end:
        bounds.append(b)
        b += BLOCK_SECONDS
    bounds.append(end)
    index = 0
    for a, z in zip(bounds, bounds[1:]):
        path = work / f"history-{a}.om"
        t = time.monotonic()
        samples += fleet.write_openmetrics(path, a, z, index)
        index += len(range(a, z, resolution))
        t_gen += time.monotonic() - t
        t = time.monotonic()
        run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet",
             f"--max-block-duration={BLOCK_SECONDS}s", str(path), str(tsdb_dir)], timeout=900)
        t_imp += time.monotonic() - t
        path.unlink()
    log(f"history: {fleet.series_count()} series, {samples:,} samples, {len(bounds) - 1} blocks; "
        f"generate {t_gen:.0f} s, promtool import {t_imp:.0f} s")
    return {"series": fleet.series_count(), "samples": samples, "generate_s": t_gen, "import_s": t_imp,
            "blocks": len(bounds) - 1}


# --------------------------------------------------------------------------- processes

def run(args: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ... exited {proc.returncode}:\n{(proc.stderr or proc.stdout)[-3000:]}")
    return proc


class Prometheus:
    """The real Prometheus on 127.0.0.1; use as a context manager, it is always stopped."""

    def __init__(self, tsdb_dir: Path, work: Path, rule_files: Iterable[Path] = (), lookback: str = "5m",
                 name: str = "prometheus"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = work / f"{name}.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"evaluation_interval": "1m", "scrape_interval": "1m"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [],
        }))
        self.args = ["prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={tsdb_dir}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=60d",
                     f"--query.lookback-delta={lookback}", "--web.enable-admin-api"]
        self.process: Process | None = None

    def __enter__(self) -> "Prometheus":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        self.process = Process(self.args)
        try:
            self.process.wait_http(self.url + "/-/ready", timeout=timeout)
        except AssertionError as exc:
            raise RuntimeError(str(exc)) from None

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def output(self) -> str:
        return self.process.output() if self.process is not None else ""

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
        self.process = None


# --------------------------------------------------------------------------- recording rules

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": DAY, "w": 7 * DAY, "y": 365 * DAY}
_RANGE = re.compile(r"\[\s*((?:\d+(?:ms|s|m|h|d|w|y))+)\s*(:[^\]]*)?\]")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def seconds(duration: str) -> float:
    return sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(duration))


def widen_ranges(expr: str, minimum: int) -> str:
    """Range selectors shorter than `minimum` seconds become `minimum` (subquery steps untouched).

    The history has one sample per resolution step, so a [5m] window over 5-minute data holds a single
    sample at most evaluation times and rate() would return nothing.
    """
    def repl(m: re.Match) -> str:
        if seconds(m.group(1)) >= minimum:
            return m.group(0)
        return f"[{minimum}s{m.group(2) or ''}]"
    return _RANGE.sub(repl, expr)


@dataclass
class Rule:
    file: Path
    group: str
    record: str
    expr: str
    labels: dict


def recording_rules(files: Iterable[Path]) -> list[Rule]:
    rules = []
    for f in files:
        doc = yaml.safe_load(f.read_text()) or {}
        for grp in doc.get("groups") or []:
            for r in grp.get("rules") or []:
                if "record" in r:
                    rules.append(Rule(f, grp["name"], r["record"], str(r["expr"]), r.get("labels") or {}))
    return rules


def rule_levels(rules: list[Rule]) -> list[list[Rule]]:
    """Group rules so each level reads only raw series and the outputs of earlier levels."""
    recorded = {r.record for r in rules}
    deps = {id(r): {n for n in _IDENT.findall(r.expr) if n in recorded} for r in rules}
    level_of: dict[str, int] = {}
    remaining = list(rules)
    levels: list[list[Rule]] = []
    while remaining:
        done_names = set(level_of)
        ready = [r for r in remaining
                 if all(d in done_names for d in deps[id(r)])
                 # a name recorded by several rules is ready only when every one of them is done
                 and not any(o is not r and o.record in deps[id(r)] for o in remaining)]
        if not ready:  # a cycle (should not happen): evaluate the rest together
            ready = remaining
        for r in ready:
            level_of[r.record] = len(levels)
        levels.append(ready)
        remaining = [r for r in remaining if all(r is not x for x in ready)]
    return levels


def backfill_rules(tsdb_dir: Path, work: Path, rule_files: list[Path], start: int, end: int, eval_interval: int,
                   min_range: int, lookback: str, log: Callable[[str], None] = print) -> dict:
    """Backfill every recording rule over [start, end] into tsdb_dir; returns stats and promtool errors."""
    rules = recording_rules(rule_files)
    levels = rule_levels(rules)
    errors: list[str] = []
    widened: set[str] = set()
    t0 = time.monotonic()
    for n, level in enumerate(levels):
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in level:
            expr = widen_ranges(r.expr, min_range)
            if expr != r.expr:
                widened.add(r.record)
            # Drop __name__ as a live evaluation would: promtool backfills a range query, and a result
            # that keeps a name at some steps (`x < 1 or ...`) but not at others would be two series that
            # become one after renaming, with out-of-order samples.
            expr = f'label_replace(\n{expr.rstrip()}\n, "__name__", "", "", "")'
            rule = {"record": r.record, "expr": expr}
            if r.labels:
                rule["labels"] = r.labels
            groups.setdefault((r.file.name, r.group), []).append(rule)
        rule_file = work / f"backfill-level{n}.yml"
        rule_file.write_text(yaml.safe_dump({"groups": [
            {"name": f"{fname}:{gname}", "interval": f"{eval_interval}s", "rules": rs}
            for (fname, gname), rs in groups.items()]}, sort_keys=False))
        out = work / f"rule-blocks-{n}"
        out.mkdir()
        with Prometheus(tsdb_dir, work, lookback=lookback, name=f"prometheus-backfill{n}") as prom:
            proc = run(["promtool", "tsdb", "create-blocks-from", "rules", "--quiet",
                        f"--start={start}", f"--end={end}", f"--url={prom.url}",
                        f"--eval-interval={eval_interval}s", f"--max-block-duration={BLOCK_SECONDS}s",
                        f"--output-dir={out}", str(rule_file)], timeout=1800, check=False)
        if proc.returncode != 0:
            errors.append(f"level {n}: promtool exited {proc.returncode}: "
                          + " | ".join(line for line in (proc.stderr + proc.stdout).splitlines()
                                       if "err" in line.lower())[-2000:])
        for block in out.iterdir():
            if (block / "meta.json").exists():
                shutil.move(str(block), str(tsdb_dir / block.name))
        shutil.rmtree(out, ignore_errors=True)
        log(f"rules level {n}: {len(level)} rules ({time.monotonic() - t0:.0f} s so far)")
    return {"rules": len(rules), "levels": len(levels), "errors": errors, "widened": sorted(widened),
            "seconds": time.monotonic() - t0}


def blocks_overlap(tsdb_dir: Path) -> tuple[int, bool]:
    """(number of blocks, whether any two overlap in time)."""
    spans = []
    for d in tsdb_dir.iterdir():
        meta = d / "meta.json"
        if d.is_dir() and meta.exists() and not d.name.endswith((".tmp", ".tmp-for-creation", ".tmp-for-deletion")):
            try:
                m = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            spans.append((m["minTime"], m["maxTime"]))
    spans.sort()
    overlap = any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    return len(spans), overlap


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


__all__ = ["Fleet", "Prometheus", "backfill_rules", "blocks_overlap", "recording_rules", "rule_levels", "run",
           "temp_dir", "widen_ranges", "write_history", "BLOCK_SECONDS"]

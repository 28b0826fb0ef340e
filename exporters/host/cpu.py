"""/proc/stat: per-CPU mode seconds, boot time, context switches, forks, interrupts, process counts; and
node_exporter's cpu collector's sysfs part: thermal throttle counts and isolated CPUs."""

from __future__ import annotations

import glob
import os
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import Paths, family, read_optional, read_text, sample

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GUEST_MODES = ("user", "nice")  # /proc/stat's guest and guest_nice columns
JUMP_BACK_SECONDS = 3.0  # node_exporter: an idle counter this far backwards means a CPU was hot-plugged

STAT_KEYS = ("btime", "ctxt", "intr", "processes", "procs_running", "procs_blocked")


def parse_cpu_list(text: str) -> list[int]:
    """The kernel's CPU list format ("0-3,8,10-11") -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus += range(int(first), int(last or first) + 1)
    return cpus


def _uint(path: str) -> int | None:
    text = read_optional(path)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def thermal_throttles(sysfs_cpu: str) -> tuple[list[Sample], list[Sample]]:
    """node_cpu_package_throttles_total{package} and node_cpu_core_throttles_total{package,core}, each read
    once per package / core (hyper-threads share them), as node_exporter 1.5."""
    packages: dict[int, int] = {}
    cores: dict[tuple[int, int], int] = {}
    for cpu in glob.glob(os.path.join(sysfs_cpu, "cpu[0-9]*")):
        package = _uint(os.path.join(cpu, "topology", "physical_package_id"))
        core = _uint(os.path.join(cpu, "topology", "core_id"))
        if package is None or core is None:
            continue
        if (package, core) not in cores:
            count = _uint(os.path.join(cpu, "thermal_throttle", "core_throttle_count"))
            if count is not None:
                cores[(package, core)] = count
        if package not in packages:
            count = _uint(os.path.join(cpu, "thermal_throttle", "package_throttle_count"))
            if count is not None:
                packages[package] = count
    return ([sample("node_cpu_package_throttles_total", {"package": str(p)}, float(n)) for p, n in packages.items()],
            [sample("node_cpu_core_throttles_total", {"package": str(p), "core": str(c)}, float(n))
             for (p, c), n in cores.items()])


def parse_stat(text: str) -> tuple[list[tuple[str, list[int]]], dict[str, int]]:
    """/proc/stat -> ([(cpu index, [user nice system idle iowait irq softirq steal guest guest_nice] ticks)],
    {btime, ctxt, intr, processes, procs_running, procs_blocked})."""
    cpus: list[tuple[str, list[int]]] = []
    info: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key.startswith("cpu"):
            if key == "cpu":
                continue  # the all-CPU total line; node_exporter exports per CPU only
            ticks = [int(x) for x in rest.split()]
            if len(ticks) < 10:
                ticks += [0] * (10 - len(ticks))
            cpus.append((key[3:], ticks))
        elif key in STAT_KEYS:
            info[key] = int(rest.split(None, 1)[0])  # intr: only the total, not the per-IRQ list
    return cpus, info


class StatCollector:
    """/proc/stat: boot time, context switches, forks, interrupts and process counts (node_exporter's stat)."""

    STAT_FAMILIES = (
        ("btime", "node_boot_time_seconds", "Node boot time, in unixtime.", "gauge"),
        ("ctxt", "node_context_switches_total", "Total number of context switches.", "counter"),
        ("processes", "node_forks_total", "Total number of forks.", "counter"),
        ("intr", "node_intr_total", "Total number of interrupts serviced.", "counter"),
        ("procs_running", "node_procs_running", "Number of processes in runnable state.", "gauge"),
        ("procs_blocked", "node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", "gauge"),
    )

    def __init__(self, paths: Paths):
        self.path = paths.proc("stat")

    def collect(self) -> Iterator[Metric]:
        _, info = parse_stat(read_text(self.path))
        for key, name, help_, typ in self.STAT_FAMILIES:
            if key in info:
                yield family(name, help_, typ, [Sample(name, {}, info[key], None, None, None)])


class CPUCollector:
    """/proc/stat: node_cpu_seconds_total{cpu,mode} and node_cpu_guest_seconds_total (node_exporter's cpu)."""

    def __init__(self, paths: Paths):
        self.path = paths.proc("stat")
        self.sysfs_cpu = paths.sys("devices", "system", "cpu")
        self.isolated = parse_cpu_list(read_optional(os.path.join(self.sysfs_cpu, "isolated")) or "")  # boot-time
        self.hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._last: dict[str, list[float]] = {}
        self._labels: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {}

    def _monotonic(self, cpu: str, seconds: list[float]) -> list[float]:
        """node_exporter 1.5's updateCPUStats: counters never go backwards, except after a CPU hot-plug."""
        last = self._last.get(cpu)
        if last is None or last[3] - seconds[3] >= JUMP_BACK_SECONDS:
            self._last[cpu] = seconds
            return seconds
        merged = [new if new >= old else old for new, old in zip(seconds, last)]
        self._last[cpu] = merged
        return merged

    def _cpu_labels(self, cpu: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        labels = self._labels.get(cpu)
        if labels is None:
            labels = ([{"cpu": cpu, "mode": mode} for mode in CPU_MODES],
                      [{"cpu": cpu, "mode": mode} for mode in GUEST_MODES])
            self._labels[cpu] = labels
        return labels

    def collect(self) -> Iterator[Metric]:
        cpus, _ = parse_stat(read_text(self.path))
        hz = self.hz
        if len(cpus) != len(self._last):  # CPUs went offline or came online
            online = {cpu for cpu, _ in cpus}
            self._last = {cpu: v for cpu, v in self._last.items() if cpu in online}
        busy: list[Sample] = []
        guest: list[Sample] = []
        for cpu, ticks in cpus:
            seconds = self._monotonic(cpu, [t / hz for t in ticks[:10]])
            mode_labels, guest_labels = self._cpu_labels(cpu)
            busy += [Sample("node_cpu_seconds_total", lbl, v, None, None, None)
                     for lbl, v in zip(mode_labels, seconds)]
            guest += [Sample("node_cpu_guest_seconds_total", lbl, v, None, None, None)
                      for lbl, v in zip(guest_labels, seconds[8:10])]
        yield family("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter", busy)
        yield family("node_cpu_guest_seconds_total", "Seconds the CPUs spent in guests (VMs) for each mode.",
                     "counter", guest)
        packages, cores = thermal_throttles(self.sysfs_cpu)
        if cores:
            yield family("node_cpu_core_throttles_total", "Number of times this CPU core has been throttled.",
                         "counter", cores)
        if packages:
            yield family("node_cpu_package_throttles_total", "Number of times this CPU package has been throttled.",
                         "counter", packages)
        if self.isolated:
            yield family("node_cpu_isolated", "Whether each core is isolated, information from "
                         "/sys/devices/system/cpu/isolated.", "gauge",
                         [sample("node_cpu_isolated", {"cpu": str(cpu)}, 1.0) for cpu in self.isolated])

"""/sys/devices/system/cpu/cpu*/cpufreq: CPU and scaling frequencies, as node_exporter 1.5's cpufreq collector."""

from __future__ import annotations

import glob
import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional, sample

# (sysfs file in kHz, metric, help)
CPUFREQ = (
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz", "Current cpu thread frequency in hertz."),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz", "Minimum cpu thread frequency in hertz."),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz", "Maximum cpu thread frequency in hertz."),
    ("scaling_cur_freq", "node_cpu_scaling_frequency_hertz", "Current scaled CPU thread frequency in hertz."),
    ("scaling_min_freq", "node_cpu_scaling_frequency_min_hertz", "Minimum scaled CPU thread frequency in hertz."),
    ("scaling_max_freq", "node_cpu_scaling_frequency_max_hertz", "Maximum scaled CPU thread frequency in hertz."),
)
TABLE = tuple((name, help_, "gauge") for _, name, help_ in CPUFREQ)


def _khz(path: str) -> float | None:
    try:
        text = read_optional(path)
    except OSError:  # cpuinfo_cur_freq is root-only
        return None
    try:
        return float(int(text)) if text else None
    except ValueError:
        return None


class CpufreqCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("devices", "system", "cpu")

    def collect(self) -> Iterator[Metric]:
        columns: dict[str, list] = {name: [] for _, name, _ in CPUFREQ}
        cpus = sorted(glob.glob(os.path.join(self.root, "cpu[0-9]*")), key=lambda p: int(p.rsplit("cpu", 1)[1]))
        for cpu in cpus:
            labels = {"cpu": cpu.rsplit("cpu", 1)[1]}
            for file, name, _ in CPUFREQ:
                khz = _khz(os.path.join(cpu, "cpufreq", file))
                if khz is not None:
                    columns[name].append(sample(name, labels, khz * 1000.0))
        yield from families_of(TABLE, columns)

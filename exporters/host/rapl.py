"""/sys/class/powercap (Intel/AMD RAPL): energy counters per power zone, as node_exporter 1.5's rapl collector
(node_rapl_<zone>_joules_total{index,path})."""

from __future__ import annotations

import os
import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, read_optional, sample

INVALID = re.compile(r"_*[^0-9A-Za-z_]+_*")  # node_exporter's SanitizeMetricName


def zones(root: str) -> list[tuple[str, int, str]]:
    """[(zone name, index, path)]: "package-0" is (package, 0); repeated plain names count up."""
    out = []
    used: dict[str, int] = {}
    for entry in sorted(os.listdir(root)):
        name = read_optional(os.path.join(root, entry, "name"))
        if name is None:
            continue
        name = name.strip()
        base, sep, number = name.partition("-")
        if sep and "-" not in number and number.lstrip("-").isdigit():
            index, name = int(number), base
        else:
            index = used.get(name, 0)
        used[name] = index + 1
        out.append((name, index, os.path.join(root, entry)))
    return out


class RaplCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "powercap")

    def collect(self) -> Iterator[Metric]:
        try:
            found = zones(self.root)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            self.no_data = True  # no RAPL on this platform (most VMs)
            return
        self.no_data = False
        out: dict[str, tuple[str, list]] = {}
        for name, index, path in found:
            try:
                text = read_optional(os.path.join(path, "energy_uj"))
            except OSError:
                text = None
            if text is None:  # energy_uj is root-only since CVE-2020-8694
                self.no_data = True
                return
            metric = f"node_rapl_{INVALID.sub('_', name)}_joules_total"
            out.setdefault(metric, (f"Current RAPL {name} value in joules", []))[1].append(
                sample(metric, {"index": str(index), "path": path}, int(text) / 1e6))
        for metric, (help_, samples) in out.items():
            yield family(metric, help_, "counter", samples)

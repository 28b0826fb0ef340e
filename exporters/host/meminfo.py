"""/proc/meminfo: every field, under node_exporter's node_memory_* names."""

from __future__ import annotations

import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, gauge, read_text

_PAREN = re.compile(r"\((.*)\)")
_meminfo_names: dict[tuple[str, bool], str] = {}


def meminfo_metric_name(field: str, has_unit: bool) -> str:
    """node_exporter's meminfo naming: `Active(anon)` -> node_memory_Active_anon_bytes; no unit -> no _bytes."""
    cached = _meminfo_names.get((field, has_unit))
    if cached is None:
        cached = "node_memory_" + _PAREN.sub(r"_\1", field) + ("_bytes" if has_unit else "")
        _meminfo_names[(field, has_unit)] = cached
    return cached


def parse_meminfo(text: str) -> list[tuple[str, float]]:
    """/proc/meminfo -> [(metric name, value)], kB fields in bytes, exactly as node_exporter 1.5."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[0].endswith(":"):
            continue
        value = float(parts[1])
        if len(parts) == 3:
            value *= 1024  # the kernel's "kB" is KiB
        out.append((meminfo_metric_name(parts[0][:-1], len(parts) == 3), value))
    return out


class MeminfoCollector:
    """/proc/meminfo, every field, named as node_exporter names them (node_memory_<Field>_bytes)."""

    def __init__(self, paths: Paths):
        self.path = paths.proc("meminfo")

    def collect(self) -> Iterator[Metric]:
        for name, value in parse_meminfo(read_text(self.path)):
            yield gauge(name, f"Memory information field {name[12:]}.", value)

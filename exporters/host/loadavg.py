"""/proc/loadavg: node_load1, node_load5, node_load15."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, gauge, read_text


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    return float(parts[0]), float(parts[1]), float(parts[2])


class LoadavgCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("loadavg")

    def collect(self) -> Iterator[Metric]:
        for minutes, value in zip((1, 5, 15), parse_loadavg(read_text(self.path))):
            yield gauge(f"node_load{minutes}", f"{minutes}m load average.", value)

"""/proc/net/softnet_stat: per-CPU packets processed, dropped and time squeezed (node_exporter 1.5's fields)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional, sample

# (metric, help, column in a softnet_stat row; the columns are hex)
SOFTNET = (
    ("node_softnet_processed_total", "Number of processed packets", 0),
    ("node_softnet_dropped_total", "Number of dropped packets", 1),
    ("node_softnet_times_squeezed_total", "Number of times processing packets ran out of quota", 2),
)
TABLE = tuple((name, help_, "counter") for name, help_, _ in SOFTNET)


class SoftnetCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("net", "softnet_stat")

    def collect(self) -> Iterator[Metric]:
        text = read_optional(self.path)
        if not text:
            return
        columns: dict[str, list] = {name: [] for name, _, _ in SOFTNET}
        for cpu, line in enumerate(text.splitlines()):
            row = line.split()
            labels = {"cpu": str(cpu)}
            for name, _, index in SOFTNET:
                columns[name].append(sample(name, labels, float(int(row[index], 16))))
        yield from families_of(TABLE, columns)

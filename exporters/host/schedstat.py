"""/proc/schedstat: per-CPU time running and waiting, and timeslices (node_exporter's schedstat collector)."""

from __future__ import annotations

import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional, sample

CPU_LINE = re.compile(r"cpu(\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)")
TABLE = (
    ("node_schedstat_running_seconds_total", "Number of seconds CPU spent running a process.", "counter"),
    ("node_schedstat_waiting_seconds_total", "Number of seconds spent by processing waiting for this CPU.",
     "counter"),
    ("node_schedstat_timeslices_total", "Number of timeslices executed by CPU.", "counter"),
)


class SchedstatCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("schedstat")

    def collect(self) -> Iterator[Metric]:
        text = read_optional(self.path)
        self.no_data = text is None  # a kernel without CONFIG_SCHEDSTATS
        if text is None:
            return
        columns: dict[str, list] = {name: [] for name, _, _ in TABLE}
        for line in text.splitlines():
            match = CPU_LINE.search(line)
            if match:
                labels = {"cpu": match.group(1)}
                running, waiting, slices = (int(match.group(i)) for i in (8, 9, 10))
                columns["node_schedstat_running_seconds_total"].append(
                    sample("node_schedstat_running_seconds_total", labels, running / 1e9))
                columns["node_schedstat_waiting_seconds_total"].append(
                    sample("node_schedstat_waiting_seconds_total", labels, waiting / 1e9))
                columns["node_schedstat_timeslices_total"].append(
                    sample("node_schedstat_timeslices_total", labels, float(slices)))
        yield from families_of(TABLE, columns)

"""What node_exporter says about itself: node_scrape_collector_{duration_seconds,success}{collector} and the
process_* metrics of the exporter's own process."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector

from ..health import Health
from .procfs import family, read_optional, sample


class NodeScrapeCollector:
    """Registered after the collectors it reports on, so it sees this very scrape's runs.

    node_scrape_collector_success follows node_exporter: 0 also when a collector found no source to read (no
    mdstat, no hwmon, no PSI: the collector sets `no_data`), which mlscope_collector_up counts as a success."""

    def __init__(self, health: Health, collectors: dict[str, object]):
        self.health = health
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        runs = self.health.last_runs()
        durations, successes = [], []
        for name, collector in self.collectors.items():
            if name in runs:
                ok, seconds = runs[name]
                labels = {"collector": name}
                durations.append(sample("node_scrape_collector_duration_seconds", labels, seconds))
                success = ok and not getattr(collector, "no_data", False)
                successes.append(sample("node_scrape_collector_success", labels, 1.0 if success else 0.0))
        yield family("node_scrape_collector_duration_seconds", "node_exporter: Duration of a collector scrape.",
                     "gauge", durations)
        yield family("node_scrape_collector_success", "node_exporter: Whether a collector succeeded.", "gauge",
                     successes)

    def describe(self) -> list:
        return []


class VirtualMemoryMaxCollector:
    """process_virtual_memory_max_bytes, which Go's client has and prometheus_client's does not."""

    def collect(self) -> Iterator[Metric]:
        for line in (read_optional("/proc/self/limits") or "").splitlines():
            if line.startswith("Max address space"):
                soft = line.split()[3]
                value = 2.0 ** 64 if soft == "unlimited" else float(soft)  # Go reports unlimited as 2^64
                yield family("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in "
                             "bytes.", "gauge", [sample("process_virtual_memory_max_bytes", {}, value)])

    def describe(self) -> list:
        return []


def self_process_collector() -> list:
    """process_cpu_seconds_total, process_resident_memory_bytes, ... of this process (Linux only, as
    prometheus_client reads /proc/self)."""
    return [ProcessCollector(registry=None), VirtualMemoryMaxCollector()]

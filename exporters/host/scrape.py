"""What node_exporter says about itself: node_scrape_collector_{duration_seconds,success}{collector} and the
process_* metrics of the exporter's own process."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.process_collector import ProcessCollector

from ..health import Health
from .procfs import family, sample


class NodeScrapeCollector:
    """Registered after the collectors it reports on, so it sees this very scrape's runs."""

    def __init__(self, health: Health, collectors: list[str]):
        self.health = health
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        runs = self.health.last_runs()
        durations, successes = [], []
        for name in self.collectors:
            if name in runs:
                ok, seconds = runs[name]
                labels = {"collector": name}
                durations.append(sample("node_scrape_collector_duration_seconds", labels, seconds))
                successes.append(sample("node_scrape_collector_success", labels, 1.0 if ok else 0.0))
        yield family("node_scrape_collector_duration_seconds", "node_exporter: Duration of a collector scrape.",
                     "gauge", durations)
        yield family("node_scrape_collector_success", "node_exporter: Whether a collector succeeded.", "gauge",
                     successes)

    def describe(self) -> list:
        return []


def self_process_collector() -> list[ProcessCollector]:
    """process_cpu_seconds_total, process_resident_memory_bytes, ... of this process (Linux only, as
    prometheus_client reads /proc/self)."""
    return [ProcessCollector(registry=None)]

"""Self-metrics: every collector's health, whether it runs at scrape time or in the background."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__

log = logging.getLogger(__name__)


@dataclass
class _State:
    up: bool = False
    duration: float = 0.0
    errors: int = 0
    last_success: float | None = None


class Health(Collector):
    """Records each collector's runs and exports the mlscope_collector_* families."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def register(self, name: str) -> None:
        with self._lock:
            self._states.setdefault(name, _State())

    def observe(self, name: str, ok: bool, duration: float, errors: int | None = None) -> None:
        """Record one run. `errors` is how many errors it counted (default: 1 if not ok)."""
        with self._lock:
            state = self._states.setdefault(name, _State())
            state.up = ok
            state.duration = duration
            state.errors += (0 if ok else 1) if errors is None else errors
            if ok:
                state.last_success = time.time()

    def count_error(self, name: str, n: int = 1) -> None:
        """Count an error that did not fail the whole run (e.g. one GPU of eight)."""
        with self._lock:
            self._states.setdefault(name, _State()).errors += n

    def last_runs(self) -> dict[str, tuple[bool, float]]:
        """{collector: (its last run succeeded, how long it took in seconds)}."""
        with self._lock:
            return {name: (state.up, state.duration) for name, state in self._states.items()}

    def is_up(self, name: str) -> bool:
        with self._lock:
            state = self._states.get(name)
            return bool(state and state.up)

    def collect(self) -> Iterable[Metric]:
        build = GaugeMetricFamily("mlscope_build_info", "MLScope build information.", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        up = GaugeMetricFamily("mlscope_collector_up", "1 when the collector's last run succeeded.", labels=["collector"])
        dur = GaugeMetricFamily(
            "mlscope_collector_duration_seconds", "Duration of the collector's last run.", labels=["collector"]
        )
        err = CounterMetricFamily("mlscope_collector_errors", "Errors counted by the collector.", labels=["collector"])
        last = GaugeMetricFamily(
            "mlscope_collector_last_success_timestamp_seconds",
            "Unix time of the collector's last successful run.",
            labels=["collector"],
        )
        with self._lock:
            states = sorted(self._states.items())
        for name, state in states:
            up.add_metric([name], 1 if state.up else 0)
            dur.add_metric([name], state.duration)
            err.add_metric([name], state.errors)
            if state.last_success is not None:
                last.add_metric([name], state.last_success)
        yield from (up, dur, err, last)


class ScrapeCollector(Collector):
    """Runs a collector at scrape time, reporting to Health; a collector that raises drops out alone.

    The wrapped collector may set `healthy = False` (e.g. NVML missing) to report itself down
    while still yielding what it has.
    """

    def __init__(self, name: str, inner: Collector, health: Health) -> None:
        self.name = name
        self.inner = inner
        self.health = health
        self._lock = threading.Lock()  # collectors keep state between scrapes (rates, wraps)
        health.register(name)

    def collect(self) -> Iterable[Metric]:
        start = time.perf_counter()
        with self._lock:
            try:
                families = list(self.inner.collect())
            except Exception as exc:  # a broken collector must not break the scrape
                self.health.observe(self.name, False, time.perf_counter() - start)
                log.error("collector %s failed: %s: %s", self.name, type(exc).__name__, exc)
                log.debug("collector %s traceback", self.name, exc_info=True)
                return []
        ok = getattr(self.inner, "healthy", True)
        self.health.observe(self.name, ok, time.perf_counter() - start)
        return families

    def describe(self) -> Iterable[Metric]:
        return []

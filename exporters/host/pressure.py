"""/proc/pressure/*: pressure stall information (PSI), as node_exporter's pressure collector."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional

# (resource, PSI line, metric name, help); the "total" field is in microseconds.
PRESSURE = (
    ("cpu", "some", "node_pressure_cpu_waiting_seconds_total",
     "Total time in seconds that processes have waited for CPU time"),
    ("io", "some", "node_pressure_io_waiting_seconds_total", "Total time in seconds that processes have waited due "
     "to IO congestion"),
    ("io", "full", "node_pressure_io_stalled_seconds_total", "Total time in seconds no process could make progress "
     "due to IO congestion"),
    ("memory", "some", "node_pressure_memory_waiting_seconds_total", "Total time in seconds that processes have "
     "waited for memory"),
    ("memory", "full", "node_pressure_memory_stalled_seconds_total", "Total time in seconds no process could make "
     "progress due to memory congestion"),
    ("irq", "full", "node_pressure_irq_stalled_seconds_total", "Total time in seconds no process could make "
     "progress due to IRQ congestion"),  # newer node_exporters; only on kernels with CONFIG_IRQ_TIME_ACCOUNTING
)
TABLE = tuple((name, help_, "counter") for _, _, name, help_ in PRESSURE)


def parse_psi(text: str) -> dict[str, float]:
    """'some avg10=0.00 avg60=0.00 avg300=0.00 total=123' lines -> {'some': seconds, 'full': seconds}."""
    out = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            if field.startswith("total="):
                out[kind] = int(field[6:]) / 1000.0 / 1000.0  # node_exporter divides twice: same float
    return out


class PressureCollector:
    def __init__(self, paths: Paths):
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        values: dict[str, float] = {}
        parsed: dict[str, dict[str, float]] = {}
        for resource, kind, name, _ in PRESSURE:
            if resource not in parsed:
                text = read_optional(self.paths.proc("pressure", resource))
                parsed[resource] = parse_psi(text) if text else {}
            if kind in parsed[resource]:
                values[name] = parsed[resource][kind]
        self.no_data = not all(parsed[r] for r in ("cpu", "io", "memory"))  # kernel < 4.20 or psi=0
        yield from families_of(TABLE, values)

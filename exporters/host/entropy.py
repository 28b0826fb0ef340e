"""/proc/sys/kernel/random: available entropy and pool size."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, gauge, read_optional

ENTROPY = (
    ("entropy_avail", "node_entropy_available_bits", "Bits of available entropy."),
    ("poolsize", "node_entropy_pool_size_bits", "Bits of entropy pool."),
)


class EntropyCollector:
    def __init__(self, paths: Paths):
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        for file, name, help_ in ENTROPY:
            text = read_optional(self.paths.proc("sys", "kernel", "random", file))
            if text:
                yield gauge(name, help_, float(text))

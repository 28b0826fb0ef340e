"""/proc/net/arp: ARP entries per network device."""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, read_optional, sample


class ArpCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("net", "arp")

    def collect(self) -> Iterator[Metric]:
        text = read_optional(self.path)
        if text is None:
            return
        devices = Counter(line.split()[-1] for line in text.splitlines()[1:] if line.strip())
        yield family("node_arp_entries", "ARP entries by device", "gauge",
                     [sample("node_arp_entries", {"device": d}, float(n)) for d, n in sorted(devices.items())])

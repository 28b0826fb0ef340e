"""/proc/net/udp and udp6: bytes queued in UDP sockets, summed per direction (node_udp_queues{ip,queue})."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, read_optional, sample


def queue_totals(text: str) -> tuple[float, float]:
    """(tx, rx) summed over sockets; the 5th column is 'tx_queue:rx_queue' in hex."""
    tx = rx = 0
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 4:
            t, _, r = parts[4].partition(":")
            tx += int(t, 16)
            rx += int(r, 16)
    return float(tx), float(rx)


class UdpQueuesCollector:
    def __init__(self, paths: Paths):
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        samples: list = []
        self.no_data = True
        for ip, file in (("v4", "udp"), ("v6", "udp6")):
            text = read_optional(self.paths.proc("net", file))
            if text is None:
                continue
            self.no_data = False
            tx, rx = queue_totals(text)
            samples += [sample("node_udp_queues", {"ip": ip, "queue": "tx"}, tx),
                        sample("node_udp_queues", {"ip": ip, "queue": "rx"}, rx)]
        if samples:
            yield family("node_udp_queues", "Number of allocated memory in the kernel for UDP datagrams in bytes.",
                         "gauge", samples)

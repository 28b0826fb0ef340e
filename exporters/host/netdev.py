"""/proc/net/dev of the network namespace we run in: node_network_*_total."""

from __future__ import annotations

import os
import re
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import DeviceFilter, Paths, family, read_optional, read_text


def parse_netdev(text: str) -> list[tuple[str, list[int]]]:
    """/proc/net/dev -> [(interface, 16 counters: 8 receive then 8 transmit)]."""
    out = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = [int(x) for x in rest.split()]
        if len(values) >= 16:
            out.append((name.strip(), values[:16]))
    return out


NETDEV_FIELDS = tuple(
    (f"node_network_{field}_total", f"Network device statistic {field}.")
    for field in [f"receive_{f}" for f in ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed",
                                           "multicast")]
    + [f"transmit_{f}" for f in ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")]
)


class NetdevCollector:
    """/proc/net/dev of the network namespace we run in (give a container the host's network)."""

    def __init__(self, paths: Paths, device_exclude: re.Pattern | None):
        self.path = paths.proc("net", "dev")
        self.sys_net = paths.sys("class", "net")
        self.keep = DeviceFilter(device_exclude)

    def _nohandler(self, device: str) -> float | None:
        """Packets dropped for want of a protocol handler: not in /proc/net/dev (node_exporter reads it
        over netlink); sysfs has the same counter."""
        text = read_optional(os.path.join(self.sys_net, device, "statistics", "rx_nohandler"))
        return float(text) if text and text.strip().isdigit() else None

    def collect(self) -> Iterator[Metric]:
        columns: list[list[Sample]] = [[] for _ in NETDEV_FIELDS]
        nohandler = []
        for device, values in parse_netdev(read_text(self.path)):
            if not self.keep(device):
                continue
            labels = {"device": device}
            for samples, (name, _), value in zip(columns, NETDEV_FIELDS, values):
                samples.append(Sample(name, labels, float(value), None, None, None))
            dropped = self._nohandler(device)
            if dropped is not None:
                nohandler.append(Sample("node_network_receive_nohandler_total", labels, dropped, None, None, None))
        for (name, help_), samples in zip(NETDEV_FIELDS, columns):
            yield family(name, help_, "counter", samples)
        if nohandler:
            yield family("node_network_receive_nohandler_total", "Network device statistic receive_nohandler.",
                         "counter", nohandler)

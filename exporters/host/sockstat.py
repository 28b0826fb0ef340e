"""/proc/net/sockstat and sockstat6: node_sockstat_<PROTOCOL>_<field>, plus _mem_bytes for fields in pages."""

from __future__ import annotations

import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, gauge, read_optional

PAGE_SIZE = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096


def parse_sockstat(text: str) -> list[tuple[str, str]]:
    """-> [(metric name, help, value)], in the file's order; 'sockets: used N' -> node_sockstat_sockets_used."""
    out = []
    for line in text.splitlines():
        protocol, _, rest = line.partition(":")
        fields = rest.split()
        pairs = list(zip(fields[::2], fields[1::2]))
        if protocol == "sockets":
            out += [(f"node_sockstat_sockets_{k}", "Number of IPv4 sockets in use.", float(v)) for k, v in pairs]
            continue
        for key, value in pairs:
            out.append((f"node_sockstat_{protocol}_{key}", f"Number of {protocol} sockets in state {key}.",
                        float(value)))
            if key == "mem":
                out.append((f"node_sockstat_{protocol}_mem_bytes", f"Number of {protocol} sockets in state mem_bytes.",
                            float(value) * PAGE_SIZE))
    return out


class SockstatCollector:
    def __init__(self, paths: Paths):
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        for file in ("sockstat", "sockstat6"):
            text = read_optional(self.paths.proc("net", file))
            for name, help_, value in parse_sockstat(text or ""):
                if file == "sockstat6" and name == "node_sockstat_sockets_used":
                    continue
                yield gauge(name, help_, value)

"""/sys/class/net/bonding_masters: configured and active slaves per bonding interface (node_exporter's bonding)."""

from __future__ import annotations

import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional, read_text, sample

TABLE = (("node_bonding_slaves", "Number of configured slaves per bonding interface.", "gauge"),
         ("node_bonding_active", "Number of active slaves per bonding interface.", "gauge"))


class BondingCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "net")

    def collect(self) -> Iterator[Metric]:
        masters = read_optional(os.path.join(self.root, "bonding_masters"))
        self.no_data = masters is None  # no bonding module
        if masters is None:
            return
        columns: dict[str, list] = {name: [] for name, _, _ in TABLE}
        for master in masters.split():
            slaves = read_text(os.path.join(self.root, master, "bonding", "slaves")).split()
            active = 0
            for slave in slaves:
                status = read_optional(os.path.join(self.root, master, f"lower_{slave}", "bonding_slave", "mii_status"))
                if status is None:  # older kernels
                    status = read_text(os.path.join(self.root, master, f"slave_{slave}", "bonding_slave",
                                                    "mii_status"))
                active += status.strip() == "up"
            columns["node_bonding_slaves"].append(sample("node_bonding_slaves", {"master": master}, float(len(slaves))))
            columns["node_bonding_active"].append(sample("node_bonding_active", {"master": master}, float(active)))
        yield from families_of(TABLE, columns)

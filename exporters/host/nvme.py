"""/sys/class/nvme: one node_nvme_info per NVMe controller (model, serial, firmware, state), as node_exporter."""

from __future__ import annotations

import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, list_dir, read_text, sample

FILES = (("firmware_rev", "firmware_revision"), ("model", "model"), ("serial", "serial"), ("state", "state"))


class NvmeCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "nvme")

    def collect(self) -> Iterator[Metric]:
        devices = list_dir(self.root)
        self.no_data = devices is None
        if devices is None:
            return
        samples = []
        for device in devices:
            labels = {"device": device}
            for file, label in FILES:
                labels[label] = read_text(os.path.join(self.root, device, file)).strip()
            samples.append(sample("node_nvme_info", labels, 1.0))
        yield family("node_nvme_info", "Non-numeric data from /sys/class/nvme/<device>, value is always 1.", "gauge",
                     samples)

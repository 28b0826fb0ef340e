"""/sys/devices/system/edac/mc: memory controllers' correctable/uncorrectable ECC error counts (node_exporter's
edac collector)."""

from __future__ import annotations

import glob
import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_text, sample

TABLE = (
    ("node_edac_correctable_errors_total", "Total correctable memory errors.", "counter"),
    ("node_edac_uncorrectable_errors_total", "Total uncorrectable memory errors.", "counter"),
    ("node_edac_csrow_correctable_errors_total", "Total correctable memory errors for this csrow.", "counter"),
    ("node_edac_csrow_uncorrectable_errors_total", "Total uncorrectable memory errors for this csrow.", "counter"),
)


def _count(path: str) -> float:
    return float(int(read_text(path).strip()))


class EdacCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("devices", "system", "edac", "mc")

    def collect(self) -> Iterator[Metric]:
        columns: dict[str, list] = {name: [] for name, _, _ in TABLE}

        def add(name: str, labels: dict[str, str], path: str) -> None:
            columns[name].append(sample(name, labels, _count(path)))

        for controller in sorted(glob.glob(os.path.join(self.root, "mc[0-9]*"))):
            mc = {"controller": os.path.basename(controller)[2:]}
            add("node_edac_correctable_errors_total", mc, os.path.join(controller, "ce_count"))
            add("node_edac_csrow_correctable_errors_total", {**mc, "csrow": "unknown"},
                os.path.join(controller, "ce_noinfo_count"))
            add("node_edac_uncorrectable_errors_total", mc, os.path.join(controller, "ue_count"))
            add("node_edac_csrow_uncorrectable_errors_total", {**mc, "csrow": "unknown"},
                os.path.join(controller, "ue_noinfo_count"))
            for csrow in sorted(glob.glob(os.path.join(controller, "csrow[0-9]*"))):
                row = {**mc, "csrow": os.path.basename(csrow)[5:]}
                add("node_edac_csrow_correctable_errors_total", row, os.path.join(csrow, "ce_count"))
                add("node_edac_csrow_uncorrectable_errors_total", row, os.path.join(csrow, "ue_count"))
        yield from families_of(TABLE, columns)

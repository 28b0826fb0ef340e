"""/sys/class/dmi/id: node_dmi_info (BIOS, board, chassis, product), read once at start-up as node_exporter does."""

from __future__ import annotations

import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, sample, valid_utf8

# sysfs file -> label (sys_vendor is node_exporter's system_vendor)
LABELS = {**{f: f for f in ("bios_date", "bios_release", "bios_vendor", "bios_version", "board_asset_tag",
                            "board_name", "board_serial", "board_vendor", "board_version", "chassis_asset_tag",
                            "chassis_serial", "chassis_vendor", "chassis_version", "product_family",
                            "product_name", "product_serial", "product_sku", "product_uuid", "product_version")},
          "sys_vendor": "system_vendor"}


def read_dmi(directory: str) -> dict[str, str]:
    labels = {}
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return labels
    for entry in entries:
        if entry.name in LABELS and entry.is_file(follow_symlinks=False):
            try:
                with open(entry.path, "rb", buffering=0) as fh:
                    labels[LABELS[entry.name]] = valid_utf8(fh.read(128)).strip()
            except PermissionError:  # the serials and UUID are root-only
                continue
    return labels


class DmiCollector:
    def __init__(self, paths: Paths):
        self.labels = read_dmi(paths.sys("class", "dmi", "id"))

    def collect(self) -> Iterator[Metric]:
        self.no_data = not self.labels  # no DMI (ARM boards, some VMs)
        if self.labels:
            yield family("node_dmi_info", "A metric with a constant '1' value labeled by bios_date, bios_release, "
                         "bios_vendor, bios_version, board_asset_tag, board_name, board_serial, board_vendor, "
                         "board_version, chassis_asset_tag, chassis_serial, chassis_vendor, chassis_version, "
                         "product_family, product_name, product_serial, product_sku, product_uuid, product_version, "
                         "system_vendor if provided by DMI.", "gauge", [sample("node_dmi_info", self.labels, 1.0)])

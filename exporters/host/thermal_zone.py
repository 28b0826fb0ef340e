"""/sys/class/thermal: thermal zone temperatures and cooling device states, as node_exporter's thermal_zone
collector."""

from __future__ import annotations

import glob
import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional, sample

TABLE = (
    ("node_thermal_zone_temp", "Zone temperature in Celsius", "gauge"),
    ("node_cooling_device_cur_state", "Current throttle state of the cooling device", "gauge"),
    ("node_cooling_device_max_state", "Maximum throttle state of the cooling device", "gauge"),
)


def _read(path: str) -> str | None:
    try:
        text = read_optional(path)
    except OSError:  # EIO/ENODATA from a sensor that cannot be read right now
        return None
    return text.strip() if text is not None else None


class ThermalZoneCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "thermal")

    def collect(self) -> Iterator[Metric]:
        columns: dict[str, list] = {name: [] for name, _, _ in TABLE}
        for zone in sorted(glob.glob(os.path.join(self.root, "thermal_zone*"))):
            kind, temp = _read(os.path.join(zone, "type")), _read(os.path.join(zone, "temp"))
            if kind is None or not temp:
                continue
            labels = {"zone": os.path.basename(zone)[len("thermal_zone"):], "type": kind}
            columns["node_thermal_zone_temp"].append(sample("node_thermal_zone_temp", labels, int(temp) / 1000.0))
        for device in sorted(glob.glob(os.path.join(self.root, "cooling_device*"))):
            kind = _read(os.path.join(device, "type"))
            current, maximum = _read(os.path.join(device, "cur_state")), _read(os.path.join(device, "max_state"))
            if kind is None or not current or not maximum:
                continue
            labels = {"name": os.path.basename(device)[len("cooling_device"):], "type": kind}
            columns["node_cooling_device_cur_state"].append(sample("node_cooling_device_cur_state", labels,
                                                                   float(int(current))))
            columns["node_cooling_device_max_state"].append(sample("node_cooling_device_max_state", labels,
                                                                   float(int(maximum))))
        yield from families_of(TABLE, columns)

"""/sys/class/power_supply: batteries, AC adapters and server PSUs that report through the kernel, as node_exporter
1.5's powersupplyclass collector (node_power_supply_<field>{power_supply}, node_power_supply_info)."""

from __future__ import annotations

import os
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, list_dir, sample, valid_utf8

# sysfs file -> (metric suffix, divisor): counts as they are, µA/µV/µWh/µW to base units, tenths of °C to °C
NUMBERS = {
    **{f: (f, 1) for f in ("authentic", "calibrate", "capacity", "capacity_alert_max", "capacity_alert_min",
                           "online", "present")},
    "cycle_count": ("cyclecount", 1), "time_to_empty_now": ("time_to_empty_seconds", 1),
    "time_to_full_now": ("time_to_full_seconds", 1),
    **{f: (f, 1e6) for f in ("current_boot", "current_max", "energy_empty", "energy_empty_design", "energy_full",
                             "energy_full_design", "voltage_boot", "voltage_max", "voltage_max_design",
                             "voltage_min", "voltage_min_design", "voltage_ocv", "charge_control_limit",
                             "charge_control_limit_max", "charge_counter", "charge_empty", "charge_empty_design",
                             "charge_full", "charge_full_design", "charge_term_current", "constant_charge_current",
                             "constant_charge_current_max", "constant_charge_voltage",
                             "constant_charge_voltage_max", "precharge_current", "input_current_limit")},
    "current_now": ("current_ampere", 1e6), "energy_now": ("energy_watthour", 1e6),
    "voltage_now": ("voltage_volt", 1e6), "charge_now": ("charge_ampere", 1e6), "power_now": ("power_watt", 1e6),
    **{f: (f + "_celsius", 10) for f in ("temp", "temp_alert_max", "temp_alert_min", "temp_ambient",
                                         "temp_ambient_max", "temp_ambient_min", "temp_max", "temp_min")},
}
INFO = ("capacity_level", "charge_type", "health", "manufacturer", "model_name", "serial_number", "status",
        "technology", "type", "usb_type", "scope")


def read_supply(path: str) -> dict[str, str]:
    """The regular files of one power supply (128 bytes each, as sysfs values), unreadable ones left out."""
    values = {}
    for entry in os.scandir(path):
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb", buffering=0) as fh:
                values[entry.name] = valid_utf8(fh.read(128)).strip()
        except OSError:  # EINVAL/EOPNOTSUPP/ENODATA from a driver without this reading
            continue
    return values


class PowerSupplyClassCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "power_supply")

    def collect(self) -> Iterator[Metric]:
        supplies = list_dir(self.root)
        self.no_data = supplies is None
        if supplies is None:
            return
        out: dict[str, list] = {}
        for supply in supplies:
            values = read_supply(os.path.join(self.root, supply))
            labels = {"power_supply": supply}
            for file, (suffix, divisor) in NUMBERS.items():
                if file in values:
                    try:
                        value = int(values[file]) / divisor if divisor != 1 else float(int(values[file]))
                    except ValueError:
                        continue
                    name = f"node_power_supply_{suffix}"
                    out.setdefault(name, []).append(sample(name, labels, value))
            info = {"power_supply": supply, **{k: values[k] for k in INFO if values.get(k)}}
            out.setdefault("node_power_supply_info", []).append(sample("node_power_supply_info", info, 1.0))
        for name, samples in out.items():
            help_ = ("info of /sys/class/power_supply/<power_supply>." if name == "node_power_supply_info" else
                     f"{name[18:]} value of /sys/class/power_supply/<power_supply>.")
            yield family(name, help_, "gauge", samples)

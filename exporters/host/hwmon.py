"""/sys/class/hwmon: hardware sensors (temperatures, fans, voltages, power, ...), named exactly as node_exporter
1.5's hwmon collector names them (node_hwmon_temp_celsius{chip,sensor}, node_hwmon_fan_rpm, ...)."""

from __future__ import annotations

import os
import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, list_dir, sample, valid_utf8

INVALID = re.compile(r"[^a-z0-9:_]")
FILENAME = re.compile(r"^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$")
SENSOR_TYPES = {"vrm", "beep_enable", "update_interval", "in", "cpu", "fan", "pwm", "temp", "curr", "power",
                "energy", "humidity", "intrusion"}


def clean(name: str) -> str:
    return INVALID.sub("_", name.lower()).strip("_")


def explode(filename: str) -> tuple[str, int, str] | None:
    """'temp1_crit_alarm' -> ('temp', 1, 'crit_alarm'); 'beep_enable' -> ('beep_enable', 0, '')."""
    match = FILENAME.match(filename)
    if not match:
        return None
    return match.group("type"), int(match.group("id") or 0), match.group("property") or ""


def _read_value(path: str) -> str | None:
    try:
        with open(path, "rb", buffering=0) as fh:
            return valid_utf8(fh.read(128)).strip("\n")
    except OSError:  # a directory (power/), an unreadable or failing sensor
        return None


def sensor_data(directory: str, data: dict[str, dict[str, str]]) -> None:
    for filename in sorted(os.listdir(directory)):
        parts = explode(filename)
        if parts is None or parts[0] not in SENSOR_TYPES:
            continue
        value = _read_value(os.path.join(directory, filename))
        if value is not None:
            data.setdefault(f"{parts[0]}{parts[1]}", {})[parts[2]] = value


def chip_name(directory: str) -> str | None:
    """node_exporter's hwmonName: <device type>_<device name> from the device link, else the name file, else the
    directory's own name."""
    device = os.path.join(directory, "device")
    if os.path.exists(device):
        prefix, dev_name = os.path.split(os.path.realpath(device))
        dev_type = os.path.basename(prefix.rstrip("/"))
        if clean(dev_type) and clean(dev_name):
            return f"{clean(dev_type)}_{clean(dev_name)}"
        if clean(dev_name):
            return clean(dev_name)
    human = human_name(directory)
    if human:
        return human
    return clean(os.path.basename(os.path.realpath(directory))) or None


def human_name(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, "name"), encoding="utf-8", errors="replace") as fh:
            return clean(fh.read()) or None
    except OSError:
        return None


def metric(sensor_type: str, element: str, has_plain: bool, value: float) -> tuple[str, str, str, float] | None:
    """(name, help, type, value) for one sensor file, by node_exporter 1.5's rules; None: not exported."""
    name = f"node_hwmon_{sensor_type}"
    if element == "input":
        if has_plain:
            name += "_input"
    elif element:
        name += "_" + clean(element)
    if element in ("fault", "alarm"):
        return name, f"Hardware sensor {element} status ({sensor_type})", "gauge", value
    if element == "beep":
        return name + "_enabled", "Hardware monitor sensor has beeping enabled", "gauge", value
    if sensor_type in ("in", "cpu"):
        return name + "_volts", f"Hardware monitor for voltage ({element})", "gauge", value * 0.001
    if sensor_type == "temp" and element != "type":
        return name + "_celsius", f"Hardware monitor for temperature ({element or 'input'})", "gauge", value * 0.001
    if sensor_type == "curr":
        return name + "_amps", f"Hardware monitor for current ({element})", "gauge", value * 0.001
    if sensor_type == "energy":
        return name + "_joule_total", f"Hardware monitor for joules used so far ({element})", "counter", value / 1e6
    if sensor_type == "power" and element == "accuracy":
        return name, "Hardware monitor power meter accuracy, as a ratio", "gauge", value / 1e6
    if sensor_type == "power" and element in ("average_interval", "average_interval_min", "average_interval_max"):
        return name + "_seconds", f"Hardware monitor power usage update interval ({element})", "gauge", value * 0.001
    if sensor_type == "power":
        return name + "_watt", f"Hardware monitor for power usage in watts ({element})", "gauge", value / 1e6
    if sensor_type == "humidity":
        return name, ("Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity as a "
                      f"percentage) ({element})"), "gauge", value / 1e6
    if sensor_type == "fan" and element in ("input", "min", "max", "target"):
        return name + "_rpm", f"Hardware monitor for fan revolutions per minute ({element})", "gauge", value
    return name, f"Hardware monitor {sensor_type} element {element}", "gauge", value


class HwmonCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "hwmon")

    def _chip(self, directory: str, out: dict[str, tuple[str, str, list]]) -> None:
        def add(name: str, help_: str, typ: str, labels: dict[str, str], value: float) -> None:
            out.setdefault(name, (help_, typ, []))[2].append(sample(name, labels, value))

        chip = chip_name(directory)
        if chip is None:
            return
        data: dict[str, dict[str, str]] = {}
        sensor_data(directory, data)
        if os.path.isdir(os.path.join(directory, "device")):
            sensor_data(os.path.join(directory, "device"), data)
        human = human_name(directory)
        if human:
            add("node_hwmon_chip_names", "Annotation metric for human-readable chip names", "gauge",
                {"chip": chip, "chip_name": human}, 1.0)
        for sensor, values in data.items():
            sensor_type = explode(sensor)[0]
            labels = {"chip": chip, "sensor": sensor}
            if "label" in values:
                add("node_hwmon_sensor_label", "Label for given chip and sensor", "gauge",
                    {**labels, "label": values["label"]}, 1.0)
            if sensor_type == "beep_enable":
                add("node_hwmon_beep_enabled", "Hardware beep enabled", "gauge", labels,
                    1.0 if values.get("") == "1" else 0.0)
                continue
            if sensor_type in ("vrm", "update_interval"):
                try:
                    value = float(values.get("", ""))
                except ValueError:
                    continue
                if sensor_type == "vrm":
                    add("node_hwmon_voltage_regulator_version", "Hardware voltage regulator", "gauge", labels, value)
                else:
                    add("node_hwmon_update_interval_seconds", "Hardware monitor update interval", "gauge", labels,
                        value * 0.001)
                continue
            for element, text in values.items():
                if element == "label":
                    continue
                try:
                    value = float(text)
                except ValueError:
                    continue
                name, help_, typ, scaled = metric(sensor_type, element, "" in values, value)
                add(name, help_, typ, labels, scaled)

    def collect(self) -> Iterator[Metric]:
        entries = list_dir(self.root)
        self.no_data = entries is None
        if entries is None:
            return
        out: dict[str, tuple[str, str, list]] = {}
        for entry in entries:
            directory = os.path.join(self.root, entry)
            if os.path.isdir(directory):  # follows the usual symlinks to /sys/devices/...
                self._chip(directory, out)
        for name, (help_, typ, samples) in out.items():
            yield family(name, help_, typ, samples)

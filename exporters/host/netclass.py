"""/sys/class/net/<device>/*: link state, carrier, MTU, speed, ... as node_exporter's netclass collector.
A file the device does not have (or that errors, like carrier on a down link) is left out."""

from __future__ import annotations

import os
import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import DeviceFilter, Paths, families_of, list_dir, read_text, sample

# (sysfs file, metric, type, scale)
NETCLASS = (
    ("addr_assign_type", "node_network_address_assign_type", "gauge", 1),
    ("carrier", "node_network_carrier", "gauge", 1),
    ("carrier_changes", "node_network_carrier_changes_total", "counter", 1),
    ("carrier_up_count", "node_network_carrier_up_changes_total", "counter", 1),
    ("carrier_down_count", "node_network_carrier_down_changes_total", "counter", 1),
    ("dev_id", "node_network_device_id", "gauge", 1),
    ("dormant", "node_network_dormant", "gauge", 1),
    ("flags", "node_network_flags", "gauge", 1),
    ("ifindex", "node_network_iface_id", "gauge", 1),
    ("iflink", "node_network_iface_link", "gauge", 1),
    ("link_mode", "node_network_iface_link_mode", "gauge", 1),
    ("mtu", "node_network_mtu_bytes", "gauge", 1),
    ("name_assign_type", "node_network_name_assign_type", "gauge", 1),
    ("netdev_group", "node_network_net_dev_group", "gauge", 1),
    ("speed", "node_network_speed_bytes", "gauge", 125000),  # Mbit/s -> bytes/s
    ("tx_queue_len", "node_network_transmit_queue_length", "gauge", 1),
    ("type", "node_network_protocol_type", "gauge", 1),
)
INFO_FILES = ("address", "broadcast", "duplex", "ifalias", "operstate")
TABLE = (("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.", "gauge"),
         ("node_network_info", "Non-numeric data from /sys/class/net/<iface>, value is always 1.", "gauge"),
         *((name, f"Network device property: {name[13:]}", typ) for _, name, typ, _ in NETCLASS))


def _read(path: str) -> str | None:
    try:
        return read_text(path)
    except OSError:  # EINVAL: carrier, speed and duplex of a link that is down
        return None


def _number(text: str | None) -> float | None:
    if not text:
        return None
    text = text.strip()
    try:
        return float(int(text, 0))  # flags are hex (0x1003)
    except ValueError:
        return None


class NetclassCollector:
    def __init__(self, paths: Paths, device_exclude: re.Pattern | None = None):
        self.root = paths.sys("class", "net")
        self.keep = DeviceFilter(device_exclude)
        # device -> its attribute files that exist: [(file, metric, scale, path)]; a file a device lacks
        # (wireless-only, virtual devices) does not appear later, so it is not tried on every scrape
        self._files: dict[str, list[tuple[str, str, float, str]]] = {}

    def _attributes(self, device: str, path: str) -> list[tuple[str, str, float, str]]:
        files = self._files.get(device)
        if files is None:
            files = [(file, name, scale, os.path.join(path, file)) for file, name, _, scale in NETCLASS
                     if os.path.exists(os.path.join(path, file))]
            self._files[device] = files
        return files

    def collect(self) -> Iterator[Metric]:
        devices = list_dir(self.root)
        if devices is None:
            return
        if set(self._files) - set(devices):  # devices went away (or were renamed): forget their files
            self._files = {d: f for d, f in self._files.items() if d in devices}
        columns: dict[str, list] = {name: [] for name, _, _ in TABLE}
        for device in devices:
            path = os.path.join(self.root, device)
            if not self.keep(device) or not os.path.isdir(path):  # bonding_masters is a file
                continue
            labels = {"device": device}
            info = {f: (_read(os.path.join(path, f)) or "").strip() for f in INFO_FILES}
            columns["node_network_up"].append(sample("node_network_up", labels, 1 if info["operstate"] == "up" else 0))
            columns["node_network_info"].append(sample("node_network_info", {**labels, **info}, 1))
            for _file, name, scale, file_path in self._attributes(device, path):
                value = _number(_read(file_path))
                if value is not None:
                    columns[name].append(sample(name, labels, value * scale))
        yield from families_of(TABLE, columns)

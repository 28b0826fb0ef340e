"""/sys/class/infiniband: HCA identity, port state and rate, and port counters (node_exporter 1.5's infiniband
collector), for the InfiniBand fabrics of multi-node training clusters."""

from __future__ import annotations

import os
import struct
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, list_dir, read_text, sample

# counters/<file> and counters_ext/<file> -> (metric suffix, scale: data counters count 4-byte words)
COUNTERS = {
    "excessive_buffer_overrun_errors": ("excessive_buffer_overrun_errors_total", 1),
    "link_downed": ("link_downed_total", 1),
    "link_error_recovery": ("link_error_recovery_total", 1),
    "local_link_integrity_errors": ("local_link_integrity_errors_total", 1),
    "multicast_rcv_packets": ("multicast_packets_received_total", 1),
    "multicast_xmit_packets": ("multicast_packets_transmitted_total", 1),
    "port_rcv_constraint_errors": ("port_constraint_errors_received_total", 1),
    "port_rcv_data": ("port_data_received_bytes_total", 4),
    "port_rcv_discards": ("port_discards_received_total", 1),
    "port_rcv_errors": ("port_errors_received_total", 1),
    "port_rcv_packets": ("port_packets_received_total", 1),
    "port_rcv_remote_physical_errors": ("port_receive_remote_physical_errors_total", 1),
    "port_rcv_switch_relay_errors": ("port_receive_switch_relay_errors_total", 1),
    "port_xmit_constraint_errors": ("port_constraint_errors_transmitted_total", 1),
    "port_xmit_data": ("port_data_transmitted_bytes_total", 4),
    "port_xmit_discards": ("port_discards_transmitted_total", 1),
    "port_xmit_packets": ("port_packets_transmitted_total", 1),
    "port_xmit_wait": ("port_transmit_wait_total", 1),
    "symbol_error": ("symbol_error_total", 1),
    "unicast_rcv_packets": ("unicast_packets_received_total", 1),
    "unicast_xmit_packets": ("unicast_packets_transmitted_total", 1),
    "VL15_dropped": ("vl15_dropped_total", 1),
}
COUNTERS_EXT = {
    "port_multicast_rcv_packets": ("legacy_multicast_packets_received_total", 1),
    "port_multicast_xmit_packets": ("legacy_multicast_packets_transmitted_total", 1),
    "port_rcv_data_64": ("legacy_data_received_bytes_total", 4),
    "port_rcv_packets_64": ("legacy_packets_received_total", 1),
    "port_unicast_rcv_packets": ("legacy_unicast_packets_received_total", 1),
    "port_unicast_xmit_packets": ("legacy_unicast_packets_transmitted_total", 1),
    "port_xmit_data_64": ("legacy_data_transmitted_bytes_total", 4),
    "port_xmit_packets_64": ("legacy_packets_transmitted_total", 1),
}
GAUGES = {
    "state_id": "State of the InfiniBand port (0: no change, 1: down, 2: init, 3: armed, 4: active, 5: act defer)",
    "physical_state_id": "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, 3: disable, "
                         "4: shift, 5: link up, 6: link error recover, 7: phytest)",
    "rate_bytes_per_second": "Maximum signal transfer rate",
}


def state_id(text: str) -> int:
    """'4: ACTIVE' -> 4."""
    number, sep, _name = text.partition(":")
    if not sep:
        raise ValueError(f"cannot parse InfiniBand state {text!r}")
    return int(number.strip())


def rate_bytes(text: str) -> int:
    """'100 Gb/sec (4X EDR)' -> bytes/s; the Gb/s figure is read as a float32, as node_exporter reads it."""
    gbits = struct.unpack("f", struct.pack("f", float(text.split(" ", 1)[0])))[0]
    return int(gbits * 125000000)


def port_counters(directory: str, table: dict[str, tuple[str, int]]) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name not in table or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb", buffering=0) as fh:
                text = fh.read(128).decode("utf-8", "replace").strip()
            value = int(text)
        except (OSError, ValueError):  # no permission, "N/A (no PMA)"
            continue
        suffix, scale = table[entry.name]
        out[suffix] = float(value * scale)
    return out


class InfinibandCollector:
    def __init__(self, paths: Paths):
        self.root = paths.sys("class", "infiniband")

    def collect(self) -> Iterator[Metric]:
        devices = list_dir(self.root)
        self.no_data = devices is None  # no HCA
        if devices is None:
            return
        info = []
        out: dict[str, list] = {}
        for device in devices:
            path = os.path.join(self.root, device)
            hca = os.path.join(path, "hca_type")
            info.append(sample("node_infiniband_info", {
                "device": device, "board_id": read_text(os.path.join(path, "board_id")).strip(),
                "firmware_version": read_text(os.path.join(path, "fw_ver")).strip(),
                "hca_type": read_text(hca).strip() if os.path.exists(hca) else ""}, 1.0))
            for port in sorted(os.listdir(os.path.join(path, "ports")), key=int):
                port_path = os.path.join(path, "ports", port)
                labels = {"device": device, "port": port}
                values = {"state_id": float(state_id(read_text(os.path.join(port_path, "state")))),
                          "physical_state_id": float(state_id(read_text(os.path.join(port_path, "phys_state")))),
                          "rate_bytes_per_second": float(rate_bytes(read_text(os.path.join(port_path, "rate"))))}
                values |= port_counters(os.path.join(port_path, "counters"), COUNTERS)
                values |= port_counters(os.path.join(port_path, "counters_ext"), COUNTERS_EXT)
                for suffix, value in values.items():
                    name = f"node_infiniband_{suffix}"
                    out.setdefault(name, []).append(sample(name, labels, value))
        yield family("node_infiniband_info", "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.",
                     "gauge", info)
        for name, samples in out.items():
            suffix = name[len("node_infiniband_"):]
            yield family(name, GAUGES.get(suffix, f"InfiniBand port counter {suffix}."),
                         "gauge" if suffix in GAUGES else "counter", samples)

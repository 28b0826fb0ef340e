"""/proc/diskstats: node_disk_*, minus node_exporter's default device exclusions."""

from __future__ import annotations

import os
import re
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import DeviceFilter, Paths, family, read_optional, read_text

# node_exporter 1.5.0's upstream default (collector/diskstats_linux.go).
DEFAULT_DISK_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size


def parse_diskstats(text: str) -> list[tuple[str, str, str, list[int]]]:
    """/proc/diskstats -> [(major, minor, device name, [counters after the name])]."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 14:
            out.append((parts[0], parts[1], parts[2], [int(x) for x in parts[3:]]))
    return out


def udev_properties(path: str) -> dict[str, str]:
    """/run/udev/data/b<major>:<minor>: 'E:KEY=value' lines."""
    props = {}
    for line in (read_optional(path) or "").splitlines():
        if line.startswith("E:"):
            key, _, value = line[2:].partition("=")
            props[key] = value
    return props


# (metric name, help, index in /proc/diskstats after the name, scale)
DISK_FIELDS = (
    ("node_disk_reads_completed_total", "The total number of reads completed successfully.", 0, 1),
    ("node_disk_reads_merged_total", "The total number of reads merged.", 1, 1),
    ("node_disk_read_bytes_total", "The total number of bytes read successfully.", 2, SECTOR_BYTES),
    ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", 3, 0.001),
    ("node_disk_writes_completed_total", "The total number of writes completed successfully.", 4, 1),
    ("node_disk_writes_merged_total", "The number of writes merged.", 5, 1),
    ("node_disk_written_bytes_total", "The total number of bytes written successfully.", 6, SECTOR_BYTES),
    ("node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes.", 7, 0.001),
    ("node_disk_io_now", "The number of I/Os currently in progress.", 8, 1),
    ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", 9, 0.001),
    ("node_disk_io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.", 10, 0.001),
    # kernel 4.18+
    ("node_disk_discards_completed_total", "The total number of discards completed successfully.", 11, 1),
    ("node_disk_discards_merged_total", "The total number of discards merged.", 12, 1),
    ("node_disk_discarded_sectors_total", "The total number of sectors discarded successfully.", 13, 1),
    ("node_disk_discard_time_seconds_total", "This is the total number of seconds spent by all discards.", 14, 0.001),
    # kernel 5.5+
    ("node_disk_flush_requests_total", "The total number of flush requests completed successfully", 15, 1),
    ("node_disk_flush_requests_time_seconds_total", "This is the total number of seconds spent by all flush "
     "requests.", 16, 0.001),
)
# udev properties -> node_disk_info labels (empty when udev has no database, as in most containers)
UDEV_LABELS = (("path", "ID_PATH"), ("wwn", "ID_WWN"), ("model", "ID_MODEL"), ("serial", "ID_SERIAL_SHORT"),
               ("revision", "ID_REVISION"))


class DiskstatsCollector:
    """/proc/diskstats, minus node_exporter's default device exclusions (partitions, loop, ram)."""

    def __init__(self, paths: Paths, device_exclude: re.Pattern | None):
        self.path = paths.proc("diskstats")
        self.keep = DeviceFilter(device_exclude)
        self.udev = paths.in_rootfs("/run/udev/data")
        self._info: dict[tuple[str, str, str], Sample] = {}

    def _disk_info(self, major: str, minor: str, device: str) -> Sample:
        key = (major, minor, device)
        info = self._info.get(key)
        if info is None:
            props = udev_properties(os.path.join(self.udev, f"b{major}:{minor}"))
            labels = {"device": device, "major": major, "minor": minor,
                      **{label: props.get(prop, "") for label, prop in UDEV_LABELS}}
            info = self._info[key] = Sample("node_disk_info", labels, 1, None, None, None)
        return info

    def collect(self) -> Iterator[Metric]:
        columns: list[list[Sample]] = [[] for _ in DISK_FIELDS]
        info = []
        for major, minor, device, stats in parse_diskstats(read_text(self.path)):
            if not self.keep(device):
                continue
            info.append(self._disk_info(major, minor, device))
            labels = {"device": device}
            for samples, (name, _, index, scale) in zip(columns, DISK_FIELDS[:len(stats)]):
                samples.append(Sample(name, labels, stats[index] * scale, None, None, None))
        yield family("node_disk_info", "Info of /sys/block/<block_device>.", "gauge", info)
        for (name, help_, _, _), samples in zip(DISK_FIELDS, columns):
            yield family(name, help_, "counter" if name.endswith("_total") else "gauge", samples)

"""/proc/diskstats: node_disk_*, minus node_exporter's default device exclusions."""

from __future__ import annotations

import re
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import DeviceFilter, Paths, family, read_text

# node_exporter 1.5.0's upstream default (collector/diskstats_linux.go).
DEFAULT_DISK_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size


def parse_diskstats(text: str) -> list[tuple[str, list[int]]]:
    """/proc/diskstats -> [(device name, [counters after the name])]."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 14:
            out.append((parts[2], [int(x) for x in parts[3:]]))
    return out


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
)


class DiskstatsCollector:
    """/proc/diskstats, minus node_exporter's default device exclusions (partitions, loop, ram)."""

    def __init__(self, paths: Paths, device_exclude: re.Pattern | None):
        self.path = paths.proc("diskstats")
        self.keep = DeviceFilter(device_exclude)

    def collect(self) -> Iterator[Metric]:
        columns: list[list[Sample]] = [[] for _ in DISK_FIELDS]
        for device, stats in parse_diskstats(read_text(self.path)):
            if not self.keep(device):
                continue
            labels = {"device": device}
            for samples, (name, _, index, scale) in zip(columns, DISK_FIELDS):
                samples.append(Sample(name, labels, stats[index] * scale, None, None, None))
        for (name, help_, _, _), samples in zip(DISK_FIELDS, columns):
            yield family(name, help_, "counter" if name.endswith("_total") else "gauge", samples)

"""`--backend psutil` (the default off Linux): the same node_exporter names, filled from psutil.

What psutil can measure, on every OS it supports: CPU seconds per mode (the modes the OS has), boot time,
context switches and interrupts, load average, memory, filesystems, disks and network interfaces. Differences
from the /proc backend, on Linux (docs/host-exporter.md lists the series each backend serves):
- node_memory_Cached_bytes is psutil's `cached`, which adds SReclaimable to /proc/meminfo's Cached;
- node_memory_* has only the fields psutil names (MemTotal, MemAvailable, MemFree, Buffers, Cached, Active,
  Inactive, Shared, Slab, SwapTotal, SwapFree);
- node_disk_* and node_network_* have the counters psutil returns (no discard/flush, no fifo/frame).
psutil is imported only here, so the /proc backend never pays for it.
"""

from __future__ import annotations

import os
import platform
import re
from types import SimpleNamespace
from typing import Any, Iterator

import psutil
from prometheus_client.core import Metric

from .cpu import CPU_MODES
from .filesystem import FilesystemCollector, Mount, select_mounts
from .procfs import DeviceFilter, Paths, families_of, family, gauge, sample

# psutil's field -> node_exporter's mode; Windows' interrupt and dpc are its irq and softirq
CPU_FIELDS = {mode: mode for mode in CPU_MODES} | {"interrupt": "irq", "dpc": "softirq"}
MEMORY_FIELDS = (("total", "MemTotal"), ("available", "MemAvailable"), ("free", "MemFree"), ("buffers", "Buffers"),
                 ("cached", "Cached"), ("active", "Active"), ("inactive", "Inactive"), ("shared", "Shmem"),
                 ("slab", "Slab"))
# (node_exporter name, help, psutil disk_io_counters field, scale)
DISK_FIELDS = (
    ("node_disk_reads_completed_total", "The total number of reads completed successfully.", "read_count", 1),
    ("node_disk_reads_merged_total", "The total number of reads merged.", "read_merged_count", 1),
    ("node_disk_read_bytes_total", "The total number of bytes read successfully.", "read_bytes", 1),
    ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", "read_time", 0.001),
    ("node_disk_writes_completed_total", "The total number of writes completed successfully.", "write_count", 1),
    ("node_disk_writes_merged_total", "The number of writes merged.", "write_merged_count", 1),
    ("node_disk_written_bytes_total", "The total number of bytes written successfully.", "write_bytes", 1),
    ("node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes.", "write_time",
     0.001),
    ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", "busy_time", 0.001),
)
NET_FIELDS = (
    ("node_network_receive_bytes_total", "bytes_recv"), ("node_network_transmit_bytes_total", "bytes_sent"),
    ("node_network_receive_packets_total", "packets_recv"), ("node_network_transmit_packets_total", "packets_sent"),
    ("node_network_receive_errs_total", "errin"), ("node_network_transmit_errs_total", "errout"),
    ("node_network_receive_drop_total", "dropin"), ("node_network_transmit_drop_total", "dropout"),
)


class PsutilCPU:
    def collect(self) -> Iterator[Metric]:
        samples = []
        for cpu, times in enumerate(psutil.cpu_times(percpu=True)):
            for field, value in times._asdict().items():
                mode = CPU_FIELDS.get(field)
                if mode is not None:
                    samples.append(sample("node_cpu_seconds_total", {"cpu": str(cpu), "mode": mode}, value))
        yield family("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter", samples)


class PsutilStat:
    def collect(self) -> Iterator[Metric]:
        yield gauge("node_boot_time_seconds", "Node boot time, in unixtime.", float(int(psutil.boot_time())))
        stats = psutil.cpu_stats()
        yield family("node_context_switches_total", "Total number of context switches.", "counter",
                     [sample("node_context_switches_total", {}, float(stats.ctx_switches))])
        yield family("node_intr_total", "Total number of interrupts serviced.", "counter",
                     [sample("node_intr_total", {}, float(stats.interrupts))])


class PsutilLoadavg:
    def collect(self) -> Iterator[Metric]:
        for minutes, value in zip((1, 5, 15), psutil.getloadavg()):
            yield gauge(f"node_load{minutes}", f"{minutes}m load average.", value)


class PsutilMeminfo:
    def collect(self) -> Iterator[Metric]:
        memory = psutil.virtual_memory()
        for field, name in MEMORY_FIELDS:
            value = getattr(memory, field, None)
            if value is not None:
                yield gauge(f"node_memory_{name}_bytes", f"Memory information field {name}_bytes.", float(value))
        swap = psutil.swap_memory()
        yield gauge("node_memory_SwapTotal_bytes", "Memory information field SwapTotal_bytes.", float(swap.total))
        yield gauge("node_memory_SwapFree_bytes", "Memory information field SwapFree_bytes.", float(swap.free))


def disk_usage_statvfs(path: str) -> Any:
    """statvfs(2)'s shape from psutil.disk_usage, where there is no statvfs (Windows): no file node counts."""
    usage = psutil.disk_usage(path)
    return SimpleNamespace(f_bsize=1, f_blocks=usage.total, f_bfree=usage.free, f_bavail=usage.free,
                           f_files=None, f_ffree=None)


class PsutilFilesystem(FilesystemCollector):
    """The /proc backend's filesystem collector (exclusions, hung-mount handling), with psutil's mount list."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.statvfs is None:
            self.statvfs = disk_usage_statvfs

    def mounts(self) -> list[Mount]:
        mounts = [Mount(p.device, p.mountpoint, p.fstype, p.opts) for p in psutil.disk_partitions(all=True)]
        return select_mounts(mounts, self.paths, self.mount_points_exclude, self.fs_types_exclude)


class PsutilDiskstats:
    def __init__(self, device_exclude: re.Pattern | None):
        self.keep = DeviceFilter(device_exclude)

    def collect(self) -> Iterator[Metric]:
        columns: dict[str, list] = {name: [] for name, _, _, _ in DISK_FIELDS}
        for device, counters in sorted((psutil.disk_io_counters(perdisk=True) or {}).items()):
            if not self.keep(device):
                continue
            for name, _, field, scale in DISK_FIELDS:
                value = getattr(counters, field, None)
                if value is not None:
                    columns[name].append(sample(name, {"device": device}, value * scale))
        yield from families_of(tuple((name, help_, "counter") for name, help_, _, _ in DISK_FIELDS), columns)


class PsutilNetdev:
    def __init__(self, device_exclude: re.Pattern | None):
        self.keep = DeviceFilter(device_exclude)

    def collect(self) -> Iterator[Metric]:
        columns: dict[str, list] = {name: [] for name, _ in NET_FIELDS}
        for device, counters in sorted(psutil.net_io_counters(pernic=True).items()):
            if self.keep(device):
                for name, field in NET_FIELDS:
                    columns[name].append(sample(name, {"device": device}, float(getattr(counters, field))))
        yield from families_of(tuple((name, f"Network device statistic {name[13:-6]}.", "counter")
                                     for name, _ in NET_FIELDS), columns)


class PortableUname:
    def collect(self) -> Iterator[Metric]:
        uts = platform.uname()
        labels = {"domainname": "(none)", "machine": uts.machine, "nodename": uts.node, "release": uts.release,
                  "sysname": uts.system, "version": uts.version}
        yield family("node_uname_info", "Labeled system information as provided by the uname system call.", "gauge",
                     [sample("node_uname_info", labels, 1)])


def build_psutil_collectors(paths: Paths, cfg: Any, names: list[str], pattern: Any) -> dict[str, Any]:
    """The psutil collectors among `names` (node_exporter's collector names)."""
    from .system import TimeCollector, UnameCollector
    factories = {
        "cpu": PsutilCPU,
        "stat": PsutilStat,
        "loadavg": PsutilLoadavg,
        "meminfo": PsutilMeminfo,
        "filesystem": lambda: PsutilFilesystem(paths, pattern(cfg.filesystem_mount_points_exclude),
                                               pattern(cfg.filesystem_fs_types_exclude),
                                               float(cfg.filesystem_mount_timeout)),
        "diskstats": lambda: PsutilDiskstats(pattern(cfg.diskstats_device_exclude)),
        "netdev": lambda: PsutilNetdev(pattern(cfg.netdev_device_exclude)),
        "time": lambda: TimeCollector(paths),
        "uname": (lambda: UnameCollector(paths)) if hasattr(os, "uname") else PortableUname,
    }
    return {name: factories[name]() for name in names if name in factories}

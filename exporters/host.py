"""`mlscope host-exporter`: CPU, memory, filesystems, disks and network under node_exporter's names.

Every value comes from the same kernel files node_exporter 1.5 reads (/proc/stat, /proc/meminfo,
/proc/1/mounts + statfs(2), /proc/diskstats, /proc/net/dev, uname(2)), so the numbers are equal to
node_exporter's, not merely close: psutil reads the same files but reshapes some values (its
`cached` adds SReclaimable to /proc/meminfo's Cached), and calling it costs more per scrape.

One collector per source, like node_exporter's collector-per-file; each reports its own
mlscope_collector_up{collector}. Paths honour --procfs, --sysfs and --rootfs, so the exporter runs
unprivileged and in a container with the host's / mounted (see docs/host-exporter.md).
"""

from __future__ import annotations

import csv
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .health import Health
from .settings import Config, Setting, SettingError, boolean, duration, optional_number, regex, string
from .spec import ExporterSpec, Parts

log = logging.getLogger(__name__)

# node_exporter 1.5.0's upstream defaults (collector/filesystem_linux.go, collector/diskstats_linux.go).
# Debian's packaged node_exporter patches the first to also drop /run, /mnt and /media, and its netdev
# collector to drop `lo`; we keep upstream's, which is what the prom/node-exporter image and the
# dashboards assume (and ML hosts often keep their data disks under /mnt).
DEFAULT_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
DEFAULT_FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs"
    r"|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
DEFAULT_DISK_DEVICE_EXCLUDE = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
DEFAULT_REGION = "us-east-1"
PRICE_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "ec2_prices.csv")

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GUEST_MODES = ("user", "nice")  # /proc/stat's guest and guest_nice columns
JUMP_BACK_SECONDS = 3.0  # node_exporter: an idle counter this far backwards means a CPU was hot-plugged
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size


# ---------------------------------------------------------------- paths and file reading

@dataclass(frozen=True)
class Paths:
    """Where the host's /proc, /sys and / are, as node_exporter's --path.procfs/sysfs/rootfs."""

    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"

    def proc(self, *parts: str) -> str:
        return os.path.join(self.procfs, *parts)

    def sys(self, *parts: str) -> str:
        return os.path.join(self.sysfs, *parts)

    def in_rootfs(self, host_path: str) -> str:
        """The path where this process sees the host's `host_path`."""
        root = self.rootfs.rstrip("/")
        return root + host_path if root else host_path

    def strip_rootfs(self, path: str) -> str:
        """A mount point as the host sees it: without the rootfs prefix (node_exporter's rootfsStripPrefix)."""
        root = self.rootfs.rstrip("/")
        if not root:
            return path
        if path == root:
            return "/"
        if path.startswith(root + "/"):
            return path[len(root):]
        return path


def read_text(path: str) -> str:
    """A whole (proc) file; unbuffered binary read, which loops until EOF for seq files."""
    with open(path, "rb", buffering=0) as fh:
        return fh.read().decode("utf-8", "replace")


_new_metric = Metric.__new__


def family(name: str, documentation: str, typ: str, samples: list[Sample]) -> Metric:
    """A metric family from ready samples. Like GaugeMetricFamily/CounterMetricFamily without their per-call
    name validation and label zipping, which cost more than reading the proc files (names here are constants;
    tests check them). A counter's family name has no _total; its samples do."""
    metric = _new_metric(Metric)
    metric.name = name[:-6] if typ == "counter" and name.endswith("_total") else name
    metric.documentation = documentation
    metric.type = typ
    metric.unit = ""
    metric.samples = samples
    return metric


def gauge(name: str, documentation: str, value: float) -> Metric:
    return family(name, documentation, "gauge", [Sample(name, {}, value, None, None, None)])


# ---------------------------------------------------------------- parsers (pure functions)

STAT_KEYS = ("btime", "ctxt", "intr", "processes", "procs_running", "procs_blocked")


def parse_stat(text: str) -> tuple[list[tuple[str, list[int]]], dict[str, int]]:
    """/proc/stat -> ([(cpu index, [user nice system idle iowait irq softirq steal guest guest_nice] ticks)],
    {btime, ctxt, intr, processes, procs_running, procs_blocked})."""
    cpus: list[tuple[str, list[int]]] = []
    info: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key.startswith("cpu"):
            if key == "cpu":
                continue  # the all-CPU total line; node_exporter exports per CPU only
            ticks = [int(x) for x in rest.split()]
            if len(ticks) < 10:
                ticks += [0] * (10 - len(ticks))
            cpus.append((key[3:], ticks))
        elif key in STAT_KEYS:
            info[key] = int(rest.split(None, 1)[0])  # intr: only the total, not the per-IRQ list
    return cpus, info


_PAREN = re.compile(r"\((.*)\)")
_meminfo_names: dict[tuple[str, bool], str] = {}


def meminfo_metric_name(field: str, has_unit: bool) -> str:
    """node_exporter's meminfo naming: `Active(anon)` -> node_memory_Active_anon_bytes; no unit -> no _bytes."""
    cached = _meminfo_names.get((field, has_unit))
    if cached is None:
        cached = "node_memory_" + _PAREN.sub(r"_\1", field) + ("_bytes" if has_unit else "")
        _meminfo_names[(field, has_unit)] = cached
    return cached


def parse_meminfo(text: str) -> list[tuple[str, float]]:
    """/proc/meminfo -> [(metric name, value)], kB fields in bytes, exactly as node_exporter 1.5."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[0].endswith(":"):
            continue
        value = float(parts[1])
        if len(parts) == 3:
            value *= 1024  # the kernel's "kB" is KiB
        out.append((meminfo_metric_name(parts[0][:-1], len(parts) == 3), value))
    return out


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    return float(parts[0]), float(parts[1]), float(parts[2])


def _unescape_mount(field: str) -> str:
    # /proc/*/mounts escapes space, tab, newline and backslash as octal (fstab(5)).
    if "\\" not in field:
        return field
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str
    fstype: str
    options: str

    @property
    def readonly(self) -> bool:
        return "ro" in self.options.split(",")


def parse_mounts(text: str) -> list[Mount]:
    """/proc/<pid>/mounts -> [Mount], mount points unescaped."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mounts.append(Mount(parts[0], _unescape_mount(parts[1]), parts[2], parts[3]))
    return mounts


def select_mounts(mounts: Iterable[Mount], paths: Paths, mount_points_exclude: re.Pattern | None,
                  fs_types_exclude: re.Pattern | None) -> list[Mount]:
    """Mount points as the host sees them, minus excluded ones, one per (device, mountpoint, fstype)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for mount in mounts:
        mountpoint = paths.strip_rootfs(mount.mountpoint)
        if mount_points_exclude is not None and mount_points_exclude.search(mountpoint):
            continue
        if fs_types_exclude is not None and fs_types_exclude.search(mount.fstype):
            continue
        key = (mount.device, mountpoint, mount.fstype)
        if key in seen:
            continue
        seen.add(key)
        out.append(Mount(mount.device, mountpoint, mount.fstype, mount.options))
    return out


def parse_diskstats(text: str) -> list[tuple[str, list[int]]]:
    """/proc/diskstats -> [(device name, [counters after the name])]."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 14:
            out.append((parts[2], [int(x) for x in parts[3:]]))
    return out


def parse_netdev(text: str) -> list[tuple[str, list[int]]]:
    """/proc/net/dev -> [(interface, 16 counters: 8 receive then 8 transmit)]."""
    out = []
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        values = [int(x) for x in rest.split()]
        if len(values) >= 16:
            out.append((name.strip(), values[:16]))
    return out


# ---------------------------------------------------------------- cost

def load_price_table(path: str = PRICE_TABLE) -> dict[tuple[str, str], float]:
    """{(region, instance type): USD per hour} from the shipped CSV (comment lines start with #)."""
    with open(path, encoding="utf-8") as fh:
        rows = csv.DictReader(line for line in fh if line.strip() and not line.startswith("#"))
        return {(row["region"].strip(), row["instance_type"].strip()): float(row["usd_per_hour"]) for row in rows}


def detect_ec2_instance_type(paths: Paths) -> str | None:
    """On EC2 (Nitro) the DMI product name is the instance type: no metadata call needed."""
    try:
        vendor = read_text(paths.sys("devices", "virtual", "dmi", "id", "sys_vendor")).strip()
        product = read_text(paths.sys("devices", "virtual", "dmi", "id", "product_name")).strip()
    except OSError:
        return None
    return product if vendor == "Amazon EC2" and product else None


def resolve_hourly_cost(hourly_cost: float | None, instance_type: str | None, region: str,
                        prices: dict[tuple[str, str], float] | None) -> tuple[str, float] | None:
    """(instance_type label, USD per hour), or None (with one log line saying why) when unknown."""
    itype = (instance_type or "").strip()
    if hourly_cost is not None:
        return itype, hourly_cost
    if not itype:
        return None
    if prices is None:
        prices = load_price_table()
    key = itype.lower()
    price = prices.get((region, key))
    if price is not None:
        return itype, price
    if key.startswith("ml."):
        log.warning("instance_type %s is a SageMaker type, priced differently from EC2 and not in the EC2 price "
                    "table; set hourly_cost_dollars to export mlscope_host_hourly_cost_dollars", itype)
    elif any(t == key for _, t in prices):
        regions = sorted(r for r, t in prices if t == key)
        log.warning("no price for instance_type %s in region %s (the price table has it for %s); set region or "
                    "hourly_cost_dollars to export mlscope_host_hourly_cost_dollars", itype, region, ", ".join(regions))
    else:
        log.warning("unknown instance_type %s: not in the EC2 price table; set hourly_cost_dollars to export "
                    "mlscope_host_hourly_cost_dollars", itype)
    return None


# ---------------------------------------------------------------- collectors

class CPUCollector:
    """/proc/stat: node_cpu_seconds_total{cpu,mode}, node_cpu_guest_seconds_total, boot time, context
    switches, forks, interrupts and process counts (node_exporter's cpu and stat collectors)."""

    STAT_FAMILIES = (
        ("btime", "node_boot_time_seconds", "Node boot time, in unixtime.", "gauge"),
        ("ctxt", "node_context_switches_total", "Total number of context switches.", "counter"),
        ("processes", "node_forks_total", "Total number of forks.", "counter"),
        ("intr", "node_intr_total", "Total number of interrupts serviced.", "counter"),
        ("procs_running", "node_procs_running", "Number of processes in runnable state.", "gauge"),
        ("procs_blocked", "node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", "gauge"),
    )

    def __init__(self, paths: Paths):
        self.path = paths.proc("stat")
        self.hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._last: dict[str, list[float]] = {}
        self._labels: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {}

    def _monotonic(self, cpu: str, seconds: list[float]) -> list[float]:
        """node_exporter 1.5's updateCPUStats: counters never go backwards, except after a CPU hot-plug."""
        last = self._last.get(cpu)
        if last is None or last[3] - seconds[3] >= JUMP_BACK_SECONDS:
            self._last[cpu] = seconds
            return seconds
        merged = [new if new >= old else old for new, old in zip(seconds, last)]
        self._last[cpu] = merged
        return merged

    def _cpu_labels(self, cpu: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        labels = self._labels.get(cpu)
        if labels is None:
            labels = ([{"cpu": cpu, "mode": mode} for mode in CPU_MODES],
                      [{"cpu": cpu, "mode": mode} for mode in GUEST_MODES])
            self._labels[cpu] = labels
        return labels

    def collect(self) -> Iterator[Metric]:
        cpus, info = parse_stat(read_text(self.path))
        hz = self.hz
        if len(cpus) != len(self._last):  # CPUs went offline or came online
            online = {cpu for cpu, _ in cpus}
            self._last = {cpu: v for cpu, v in self._last.items() if cpu in online}
        busy: list[Sample] = []
        guest: list[Sample] = []
        for cpu, ticks in cpus:
            seconds = self._monotonic(cpu, [t / hz for t in ticks[:10]])
            mode_labels, guest_labels = self._cpu_labels(cpu)
            busy += [Sample("node_cpu_seconds_total", lbl, v, None, None, None)
                     for lbl, v in zip(mode_labels, seconds)]
            guest += [Sample("node_cpu_guest_seconds_total", lbl, v, None, None, None)
                      for lbl, v in zip(guest_labels, seconds[8:10])]
        yield family("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter", busy)
        yield family("node_cpu_guest_seconds_total", "Seconds the CPUs spent in guests (VMs) for each mode.",
                     "counter", guest)
        for key, name, help_, typ in self.STAT_FAMILIES:
            if key in info:
                yield family(name, help_, typ, [Sample(name, {}, info[key], None, None, None)])


class LoadavgCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("loadavg")

    def collect(self) -> Iterator[Metric]:
        for minutes, value in zip((1, 5, 15), parse_loadavg(read_text(self.path))):
            yield gauge(f"node_load{minutes}", f"{minutes}m load average.", value)


class MeminfoCollector:
    """/proc/meminfo, every field, named as node_exporter names them (node_memory_<Field>_bytes)."""

    def __init__(self, paths: Paths):
        self.path = paths.proc("meminfo")

    def collect(self) -> Iterator[Metric]:
        for name, value in parse_meminfo(read_text(self.path)):
            yield gauge(name, f"Memory information field {name[12:]}.", value)


class _StatProgress:
    """What one statvfs job has done so far, shared between the worker and the scrape."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled = False
        self.current: Mount | None = None
        self.done: list[tuple[Mount, os.statvfs_result | None]] = []


FILESYSTEM_FAMILIES = (
    ("node_filesystem_size_bytes", "Filesystem size in bytes."),
    ("node_filesystem_free_bytes", "Filesystem free space in bytes."),
    ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes."),
    ("node_filesystem_files", "Filesystem total file nodes."),
    ("node_filesystem_files_free", "Filesystem total free file nodes."),
    ("node_filesystem_readonly", "Filesystem read-only status."),
    ("node_filesystem_device_error", "Whether an error occurred while getting statistics for the given device."),
)


class DaemonWorkers:
    """Run jobs on daemon threads, started on demand. A thread stuck in statvfs of a hung NFS mount must not
    keep the process from exiting on SIGTERM (ThreadPoolExecutor joins its threads at exit)."""

    def __init__(self, name: str, limit: int = 32):
        self.name = name
        self.limit = limit
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def submit(self, fn: Any, *args: Any) -> threading.Event:
        done = threading.Event()
        with self._lock:
            spawn = self._idle == 0 and self._threads < self.limit
            if spawn:
                self._threads += 1
        self._jobs.put((fn, args, done))
        if spawn:
            threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return done

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            fn, args, done = self._jobs.get()
            with self._lock:
                self._idle -= 1
            try:
                fn(*args)
            except Exception as exc:  # a job's failure is the job's business; keep the worker
                log.debug("%s job failed: %s", self.name, exc)
            finally:
                done.set()


class FilesystemCollector:
    """/proc/1/mounts (or /proc/mounts) + statvfs(2) of each mount point under rootfs.

    statvfs runs on a worker thread so a hung network mount cannot hang the scrape: after
    `mount_timeout` the mount point is reported with node_filesystem_device_error 1 and skipped until
    its statvfs returns (node_exporter skips stuck mounts the same way, --collector.filesystem.mount-timeout).
    """

    def __init__(self, paths: Paths, mount_points_exclude: re.Pattern | None, fs_types_exclude: re.Pattern | None,
                 mount_timeout: float = 5.0):
        self.paths = paths
        self.mount_points_exclude = mount_points_exclude
        self.fs_types_exclude = fs_types_exclude
        self.mount_timeout = mount_timeout
        self._stuck: set[str] = set()
        self._lock = threading.Lock()
        self._workers = DaemonWorkers("statvfs")

    def mounts(self) -> list[Mount]:
        try:
            text = read_text(self.paths.proc("1", "mounts"))
        except FileNotFoundError:  # hidepid: PID 1 is not visible to us
            text = read_text(self.paths.proc("mounts"))
        return select_mounts(parse_mounts(text), self.paths, self.mount_points_exclude, self.fs_types_exclude)

    def _stat_all(self, mounts: list[Mount], progress: _StatProgress) -> None:
        for mount in mounts:
            with progress.lock:
                if progress.cancelled:
                    return
                progress.current = mount
            try:
                result: os.statvfs_result | None = os.statvfs(self.paths.in_rootfs(mount.mountpoint))
            except OSError as exc:
                log.debug("statvfs %s: %s", mount.mountpoint, exc)
                result = None
            with progress.lock:
                progress.current = None
                progress.done.append((mount, result))
            if self._stuck:
                with self._lock:
                    if mount.mountpoint in self._stuck:
                        self._stuck.discard(mount.mountpoint)
                        log.info("mount point %s responds again", mount.mountpoint)

    def _stat(self, mounts: list[Mount]) -> tuple[list[tuple[Mount, os.statvfs_result | None]], list[Mount]]:
        """statvfs every mount, giving up on one after `mount_timeout`: ([(mount, result or None)], [hung mounts]).

        The first scrape that meets a hung mount waits mount_timeout for it (node_exporter waits forever),
        then carries on with the others on a fresh worker; later scrapes skip it until its statvfs returns.
        """
        done: list[tuple[Mount, os.statvfs_result | None]] = []
        hung: list[Mount] = []
        remaining = mounts
        while remaining:
            progress = _StatProgress()
            if self._workers.submit(self._stat_all, remaining, progress).wait(self.mount_timeout):
                done += progress.done
                break
            with progress.lock:
                progress.cancelled = True
                current, finished = progress.current, list(progress.done)
            done += finished
            if current is None:
                break  # every worker is stuck in a hung mount: the rest wait for the next scrape
            hung.append(current)
            with self._lock:
                self._stuck.add(current.mountpoint)
            log.warning("statvfs of mount point %s did not return within %gs; skipping it until it does",
                        current.mountpoint, self.mount_timeout)
            skip = {id(m) for m, _ in finished} | {id(current)}
            remaining = [m for m in remaining if id(m) not in skip]
        return done, hung

    def collect(self) -> Iterator[Metric]:
        mounts = self.mounts()
        with self._lock:
            stuck = [m for m in mounts if m.mountpoint in self._stuck] if self._stuck else []
        todo = [m for m in mounts if m.mountpoint not in self._stuck] if stuck else mounts
        done, hung = self._stat(todo)
        stuck += hung
        columns: list[list[Sample]] = [[] for _ in FILESYSTEM_FAMILIES]
        size, free, avail, files, files_free, readonly, error = columns
        for mount, st in done:
            labels = {"device": mount.device, "fstype": mount.fstype, "mountpoint": mount.mountpoint}
            error.append(Sample("node_filesystem_device_error", labels, 0 if st is not None else 1, None, None, None))
            if st is None:
                continue
            bsize = st.f_bsize  # node_exporter multiplies by statfs' f_bsize
            size.append(Sample("node_filesystem_size_bytes", labels, float(st.f_blocks * bsize), None, None, None))
            free.append(Sample("node_filesystem_free_bytes", labels, float(st.f_bfree * bsize), None, None, None))
            avail.append(Sample("node_filesystem_avail_bytes", labels, float(st.f_bavail * bsize), None, None, None))
            files.append(Sample("node_filesystem_files", labels, float(st.f_files), None, None, None))
            files_free.append(Sample("node_filesystem_files_free", labels, float(st.f_ffree), None, None, None))
            readonly.append(Sample("node_filesystem_readonly", labels, 1 if mount.readonly else 0, None, None, None))
        for mount in stuck:
            labels = {"device": mount.device, "fstype": mount.fstype, "mountpoint": mount.mountpoint}
            error.append(Sample("node_filesystem_device_error", labels, 1, None, None, None))
        for (name, help_), samples in zip(FILESYSTEM_FAMILIES, columns):
            yield family(name, help_, "gauge", samples)


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


class DeviceFilter:
    """A device-exclude regexp, with its answers remembered (device names rarely change)."""

    def __init__(self, exclude: re.Pattern | None):
        self.exclude = exclude
        self._keep: dict[str, bool] = {}

    def __call__(self, device: str) -> bool:
        keep = self._keep.get(device)
        if keep is None:
            keep = self.exclude is None or not self.exclude.search(device)
            if len(self._keep) > 4096:
                self._keep.clear()
            self._keep[device] = keep
        return keep


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


NETDEV_FIELDS = tuple(
    (f"node_network_{field}_total", f"Network device statistic {field}.")
    for field in [f"receive_{f}" for f in ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed",
                                           "multicast")]
    + [f"transmit_{f}" for f in ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")]
)


class NetdevCollector:
    """/proc/net/dev of the network namespace we run in (give a container the host's network)."""

    def __init__(self, paths: Paths, device_exclude: re.Pattern | None):
        self.path = paths.proc("net", "dev")
        self.keep = DeviceFilter(device_exclude)

    def collect(self) -> Iterator[Metric]:
        columns: list[list[Sample]] = [[] for _ in NETDEV_FIELDS]
        for device, values in parse_netdev(read_text(self.path)):
            if not self.keep(device):
                continue
            labels = {"device": device}
            for samples, (name, _), value in zip(columns, NETDEV_FIELDS, values):
                samples.append(Sample(name, labels, float(value), None, None, None))
        for (name, help_), samples in zip(NETDEV_FIELDS, columns):
            yield family(name, help_, "counter", samples)


class TimeCollector:
    def collect(self) -> Iterator[Metric]:
        yield gauge("node_time_seconds", "System time in seconds since epoch (1970).", time.time())


class UnameCollector:
    def __init__(self, paths: Paths):
        self.domainname_path = paths.proc("sys", "kernel", "domainname")

    def collect(self) -> Iterator[Metric]:
        uts = os.uname()
        try:
            domainname = read_text(self.domainname_path).strip()
        except OSError:
            domainname = "(none)"
        labels = {"domainname": domainname, "machine": uts.machine, "nodename": uts.nodename,
                  "release": uts.release, "sysname": uts.sysname, "version": uts.version}
        yield family("node_uname_info", "Labeled system information as provided by the uname system call.", "gauge",
                     [Sample("node_uname_info", labels, 1, None, None, None)])


class CostCollector:
    def __init__(self, instance_type: str, dollars_per_hour: float):
        self.instance_type = instance_type
        self.dollars_per_hour = dollars_per_hour

    def collect(self) -> Iterator[Metric]:
        name = "mlscope_host_hourly_cost_dollars"
        yield family(name, "What this host costs per hour, in US dollars (from config or the price table).", "gauge",
                     [Sample(name, {"instance_type": self.instance_type}, self.dollars_per_hour, None, None, None)])


# ---------------------------------------------------------------- settings and wiring

def directory(raw: Any) -> str:
    path = string(raw).strip()
    if not path:
        raise ValueError("must be a directory path")
    if not os.path.isdir(path):
        raise ValueError(f"{path} is not a directory" if os.path.exists(path) else f"{path} does not exist")
    return path


def _pattern(value: Any) -> re.Pattern | None:
    if value is None or isinstance(value, re.Pattern):
        return value
    return regex(value)


SETTINGS = [
    Setting("rootfs", directory, "/", "where the host's / is mounted, like node_exporter's --path.rootfs "
            "(e.g. /host in a container); mount points are reported without this prefix"),
    Setting("procfs", directory, "/proc", "where the host's /proc is mounted, like --path.procfs"),
    Setting("sysfs", directory, "/sys", "where the host's /sys is mounted, like --path.sysfs"),
    Setting("hourly_cost_dollars", optional_number, None,
            "what this host costs per hour in USD; overrides the price table"),
    Setting("instance_type", string, None, "EC2 instance type (e.g. g5.xlarge) to price from the shipped table "
            "and to label the cost with; read from DMI on EC2 when unset"),
    Setting("region", string, DEFAULT_REGION, "AWS region for the price table"),
    Setting("detect_instance_type", boolean, True, "read the EC2 instance type from DMI (sysfs) when unset"),
    Setting("filesystem_mount_points_exclude", regex, DEFAULT_MOUNT_POINTS_EXCLUDE,
            "regexp of mount points to leave out; the default is node_exporter 1.5's"),
    Setting("filesystem_fs_types_exclude", regex, DEFAULT_FS_TYPES_EXCLUDE,
            "regexp of filesystem types to leave out; the default is node_exporter 1.5's"),
    Setting("filesystem_mount_timeout", duration, 5.0,
            "how long (seconds, or a duration like 5s) statfs of a mount point may hang before it is skipped "
            "until it returns"),
    Setting("diskstats_device_exclude", regex, DEFAULT_DISK_DEVICE_EXCLUDE,
            "regexp of block devices to leave out (partitions, loop, ram); the default is node_exporter 1.5's"),
    Setting("netdev_device_exclude", regex, None, "regexp of network devices to leave out (default: none)"),
]


def build(cfg: Config, health: Health) -> Parts:
    paths = Paths(procfs=cfg.procfs or "/proc", sysfs=cfg.sysfs or "/sys", rootfs=cfg.rootfs or "/")
    if not os.path.isfile(paths.proc("stat")):
        raise SettingError(f"--procfs: {paths.procfs} has no stat file; point it at a proc filesystem "
                           "(e.g. /host/proc in a container)")
    scrape: dict[str, Any] = {
        "cpu": CPUCollector(paths),
        "loadavg": LoadavgCollector(paths),
        "meminfo": MeminfoCollector(paths),
        "filesystem": FilesystemCollector(paths, _pattern(cfg.filesystem_mount_points_exclude),
                                          _pattern(cfg.filesystem_fs_types_exclude),
                                          float(cfg.filesystem_mount_timeout)),
        "diskstats": DiskstatsCollector(paths, _pattern(cfg.diskstats_device_exclude)),
        "netdev": NetdevCollector(paths, _pattern(cfg.netdev_device_exclude)),
        "time": TimeCollector(),
        "uname": UnameCollector(paths),
    }
    instance_type = cfg.instance_type
    if not instance_type and cfg.detect_instance_type is not False:
        instance_type = detect_ec2_instance_type(paths)
        if instance_type:
            log.info("EC2 instance type %s (from DMI)", instance_type)
    try:
        cost = resolve_hourly_cost(cfg.hourly_cost_dollars, instance_type, cfg.region or DEFAULT_REGION, None)
    except (OSError, ValueError, KeyError) as exc:
        log.error("cannot read the price table %s: %s", PRICE_TABLE, exc)
        cost = None
    if cost is not None:
        scrape["cost"] = CostCollector(*cost)
    return Parts(scrape=scrape)


SPEC = ExporterSpec(
    command="host-exporter",
    title="host exporter",
    default_port=9856,
    settings=SETTINGS,
    build=build,
)

"""`mlscope host-exporter`: node_exporter's default Linux collectors, under node_exporter's names.

Every value comes from the same kernel files node_exporter 1.5 reads (/proc/stat, /proc/meminfo,
/proc/1/mounts + statfs(2), /proc/diskstats, /proc/net/*, /sys/class/net, adjtimex(2), uname(2)), so the
numbers are equal to node_exporter's, not merely close: psutil reads the same files but reshapes some values
(its `cached` adds SReclaimable to /proc/meminfo's Cached), and calling it costs more per scrape.
`--backend psutil` (the default off Linux) fills the same names from psutil instead (see psutil_backend).

One module per collector, named as node_exporter names it; each reports mlscope_collector_up{collector}
and node_scrape_collector_success{collector}. Switches and paths take node_exporter's flag names too
(--collector.NAME, --no-collector.NAME, --collector.disable-defaults, --path.procfs, ...), so a systemd
unit or Helm values written for node_exporter keep working (see docs/host-exporter.md).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Callable

from ..allocation import DEFAULT_KEYS as ALLOCATION_KEYS
from ..health import Health
from ..settings import (Config, Setting, SettingError, boolean, choice, duration, optional_number, regex, string)
from ..spec import ExporterSpec, Parts
from .arp import ArpCollector
from .bonding import BondingCollector
from .conntrack import ConntrackCollector
from .cost import (DEFAULT_REGION, IMDS_URL, PRICE_TABLE, CostCollector, allocation_labels, detect_ec2_instance_type,
                   ec2_tag_keys, ec2_tag_labels, resolve_hourly_cost)
from .cpu import CPUCollector, StatCollector
from .cpufreq import CpufreqCollector
from .diskstats import DEFAULT_DISK_DEVICE_EXCLUDE, DiskstatsCollector
from .dmi import DmiCollector
from .edac import EdacCollector
from .entropy import EntropyCollector
from .filefd import FilefdCollector
from .filesystem import DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE, FilesystemCollector
from .hwmon import HwmonCollector
from .infiniband import InfinibandCollector
from .loadavg import LoadavgCollector
from .mdadm import MdadmCollector
from .meminfo import MeminfoCollector
from .netclass import NetclassCollector
from .netdev import NetdevCollector
from .netstat import DEFAULT_FIELDS as NETSTAT_FIELDS, NetstatCollector
from .nvme import NvmeCollector
from .os_release import OSReleaseCollector
from .powersupplyclass import PowerSupplyClassCollector
from .pressure import PressureCollector
from .procfs import Paths
from .rapl import RaplCollector
from .schedstat import SchedstatCollector
from .scrape import NodeScrapeCollector, self_process_collector
from .sockstat import SockstatCollector
from .softnet import SoftnetCollector
from .system import TimeCollector, UnameCollector
from .textfile import TextfileCollector
from .thermal_zone import ThermalZoneCollector
from .timex import TimexCollector
from .udp_queues import UdpQueuesCollector
from .vmstat import DEFAULT_FIELDS as VMSTAT_FIELDS, VmstatCollector

log = logging.getLogger(__name__)


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


# node_exporter's collector name -> how to build it from (paths, config). All are on by default, as in
# node_exporter 1.5 on Linux; node_exporter's other default collectors are not implemented (see the docs).
COLLECTORS: dict[str, Callable[[Paths, Config], Any]] = {
    "arp": lambda p, c: ArpCollector(p),
    "bonding": lambda p, c: BondingCollector(p),
    "conntrack": lambda p, c: ConntrackCollector(p),
    "cpu": lambda p, c: CPUCollector(p),
    "cpufreq": lambda p, c: CpufreqCollector(p),
    "diskstats": lambda p, c: DiskstatsCollector(p, _pattern(c.diskstats_device_exclude)),
    "dmi": lambda p, c: DmiCollector(p),
    "edac": lambda p, c: EdacCollector(p),
    "entropy": lambda p, c: EntropyCollector(p),
    "filefd": lambda p, c: FilefdCollector(p),
    "filesystem": lambda p, c: FilesystemCollector(p, _pattern(c.filesystem_mount_points_exclude),
                                                   _pattern(c.filesystem_fs_types_exclude),
                                                   float(c.filesystem_mount_timeout)),
    "hwmon": lambda p, c: HwmonCollector(p),
    "infiniband": lambda p, c: InfinibandCollector(p),
    "loadavg": lambda p, c: LoadavgCollector(p),
    "mdadm": lambda p, c: MdadmCollector(p),
    "meminfo": lambda p, c: MeminfoCollector(p),
    "netclass": lambda p, c: NetclassCollector(p, _pattern(c.netclass_ignored_devices)),
    "netdev": lambda p, c: NetdevCollector(p, _pattern(c.netdev_device_exclude)),
    "netstat": lambda p, c: NetstatCollector(p, _pattern(c.netstat_fields)),
    "nvme": lambda p, c: NvmeCollector(p),
    "os": lambda p, c: OSReleaseCollector(p),
    "powersupplyclass": lambda p, c: PowerSupplyClassCollector(p),
    "pressure": lambda p, c: PressureCollector(p),
    "rapl": lambda p, c: RaplCollector(p),
    "schedstat": lambda p, c: SchedstatCollector(p),
    "sockstat": lambda p, c: SockstatCollector(p),
    "softnet": lambda p, c: SoftnetCollector(p),
    "stat": lambda p, c: StatCollector(p),
    "textfile": lambda p, c: TextfileCollector(c.textfile_directory),
    "thermal_zone": lambda p, c: ThermalZoneCollector(p),
    "time": lambda p, c: TimeCollector(p),
    "timex": lambda p, c: TimexCollector(),
    "udp_queues": lambda p, c: UdpQueuesCollector(p),
    "uname": lambda p, c: UnameCollector(p),
    "vmstat": lambda p, c: VmstatCollector(p, _pattern(c.vmstat_fields)),
}
# What the psutil backend can fill (psutil_backend.py), and the collectors that read no /proc or /sys and so
# run with either backend; the others need Linux's /proc and /sys.
PSUTIL_COLLECTORS = ("cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat", "time", "uname")
PORTABLE_COLLECTORS = ("os", "textfile")
DEFAULT_BACKEND = "proc" if sys.platform.startswith("linux") else "psutil"


def collector_switch(name: str) -> Setting:
    return Setting(f"collector_{name}", boolean, None,
                   f"turn the {name} collector on (or off with --no-collector.{name}); on unless "
                   "--collector.disable-defaults", aliases=(f"--collector.{name}",))


SETTINGS = [
    Setting("backend", choice("proc", "psutil"), DEFAULT_BACKEND,
            "where values come from: proc (Linux /proc and /sys, exactly node_exporter's numbers) or psutil "
            "(any OS; fewer series)"),
    Setting("rootfs", directory, "/", "where the host's / is mounted, like node_exporter's --path.rootfs "
            "(e.g. /host in a container); mount points are reported without this prefix", aliases=("--path.rootfs",)),
    Setting("procfs", directory, "/proc", "where the host's /proc is mounted, like --path.procfs",
            aliases=("--path.procfs",)),
    Setting("sysfs", directory, "/sys", "where the host's /sys is mounted, like --path.sysfs",
            aliases=("--path.sysfs",)),
    Setting("collector_disable_defaults", boolean, False, "start with every collector off; turn on the ones you "
            "want with --collector.NAME", aliases=("--collector.disable-defaults",)),
    *(collector_switch(name) for name in COLLECTORS),
    Setting("textfile_directory", string, None, "directory of *.prom files to export (node_exporter's textfile "
            "collector)", aliases=("--collector.textfile.directory",)),
    Setting("hourly_cost_dollars", optional_number, None,
            "what this host costs per hour in USD; overrides the price table"),
    Setting("instance_type", string, None, "EC2 instance type (e.g. g5.xlarge) to price from the shipped table "
            "and to label the cost with; read from DMI on EC2 when unset"),
    Setting("region", string, DEFAULT_REGION, "AWS region for the price table"),
    Setting("labels", allocation_labels, None, "cost allocation labels on mlscope_host_hourly_cost_dollars, "
            "KEY=VALUE[,KEY=VALUE] (file: a mapping), e.g. team=ml-platform,project=search (docs/cost.md)"),
    Setting("detect_instance_type", boolean, True, "read the EC2 instance type from DMI (sysfs) when unset"),
    Setting("ec2_tags", boolean, False, "on EC2, label the cost with this instance's tags named in ec2_tag_keys "
            "(IMDSv2; the instance must allow tags in metadata); `labels` override them"),
    Setting("ec2_tag_keys", ec2_tag_keys, ALLOCATION_KEYS, "the instance tags ec2_tags reads, KEY[,KEY] (file: a list), "
            "as allocation_keys in alerts/allocation.yml (cost-center -> label cost_center)"),
    Setting("ec2_metadata_url", string, IMDS_URL, "the EC2 instance metadata service, for ec2_tags"),
    Setting("filesystem_mount_points_exclude", regex, DEFAULT_MOUNT_POINTS_EXCLUDE,
            "regexp of mount points to leave out; the default is node_exporter 1.5's",
            aliases=("--collector.filesystem.mount-points-exclude", "--collector.filesystem.ignored-mount-points")),
    Setting("filesystem_fs_types_exclude", regex, DEFAULT_FS_TYPES_EXCLUDE,
            "regexp of filesystem types to leave out; the default is node_exporter 1.5's",
            aliases=("--collector.filesystem.fs-types-exclude", "--collector.filesystem.ignored-fs-types")),
    Setting("filesystem_mount_timeout", duration, 5.0,
            "how long (seconds, or a duration like 5s) statfs of a mount point may hang before it is skipped "
            "until it returns", aliases=("--collector.filesystem.mount-timeout",)),
    Setting("diskstats_device_exclude", regex, DEFAULT_DISK_DEVICE_EXCLUDE,
            "regexp of block devices to leave out (partitions, loop, ram); the default is node_exporter 1.5's",
            aliases=("--collector.diskstats.device-exclude", "--collector.diskstats.ignored-devices")),
    Setting("netdev_device_exclude", regex, None, "regexp of network devices to leave out (default: none)",
            aliases=("--collector.netdev.device-exclude", "--collector.netdev.ignored-devices")),
    Setting("netclass_ignored_devices", regex, None, "regexp of network devices the netclass collector leaves out",
            aliases=("--collector.netclass.ignored-devices",)),
    Setting("netstat_fields", regex, NETSTAT_FIELDS, "regexp of /proc/net/{netstat,snmp,snmp6} fields to export; "
            "the default is node_exporter 1.5's", aliases=("--collector.netstat.fields",)),
    Setting("vmstat_fields", regex, VMSTAT_FIELDS, "regexp of /proc/vmstat fields to export; the default is "
            "node_exporter 1.5's", aliases=("--collector.vmstat.fields",)),
]


def enabled_collectors(cfg: Config) -> list[str]:
    """node_exporter's rule: an explicit --collector.NAME / --no-collector.NAME wins, otherwise the default
    (on), unless --collector.disable-defaults."""
    defaults = not cfg.collector_disable_defaults
    names = []
    for name in COLLECTORS:
        switch = getattr(cfg, f"collector_{name}")
        if switch if switch is not None else defaults:
            names.append(name)
    return names


def build(cfg: Config, health: Health) -> Parts:
    paths = Paths(procfs=cfg.procfs or "/proc", sysfs=cfg.sysfs or "/sys", rootfs=cfg.rootfs or "/")
    names = enabled_collectors(cfg)
    scrape: dict[str, Any] = {}
    if (cfg.backend or DEFAULT_BACKEND) == "psutil":
        asked = sorted(n for n in names if getattr(cfg, f"collector_{n}")
                       and n not in PSUTIL_COLLECTORS + PORTABLE_COLLECTORS)
        if asked:
            raise SettingError(f"--collector.{asked[0]}: not available with --backend psutil (it reads Linux's "
                               "/proc or /sys); use --backend proc")
        from .psutil_backend import build_psutil_collectors
        scrape.update(build_psutil_collectors(paths, cfg, [n for n in names if n in PSUTIL_COLLECTORS], _pattern))
        scrape.update({n: COLLECTORS[n](paths, cfg) for n in names if n in PORTABLE_COLLECTORS})
    else:
        if not os.path.isfile(paths.proc("stat")):
            raise SettingError(f"--procfs: {paths.procfs} has no stat file; point it at a proc filesystem "
                               "(e.g. /host/proc in a container)")
        scrape.update({name: COLLECTORS[name](paths, cfg) for name in names})
    node_collectors = dict(scrape)
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
        tags = ec2_tag_labels(cfg.ec2_tag_keys, cfg.ec2_metadata_url) if cfg.ec2_tags else {}
        scrape["cost"] = CostCollector(*cost, {**tags, **(cfg.labels or {})})
    direct = [NodeScrapeCollector(health, node_collectors), *self_process_collector()]
    return Parts(scrape=scrape, direct=direct)


SPEC = ExporterSpec(
    command="host-exporter",
    title="host exporter",
    default_port=9856,
    settings=SETTINGS,
    build=build,
)

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

import logging
import os
import re
from typing import Any

from ..health import Health
from ..settings import Config, Setting, SettingError, boolean, duration, optional_number, regex, string
from ..spec import ExporterSpec, Parts
from .cost import (DEFAULT_REGION, PRICE_TABLE, CostCollector, allocation_labels, detect_ec2_instance_type,
                   resolve_hourly_cost)
from .cpu import CPUCollector
from .diskstats import DEFAULT_DISK_DEVICE_EXCLUDE, DiskstatsCollector
from .filesystem import DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE, FilesystemCollector
from .loadavg import LoadavgCollector
from .meminfo import MeminfoCollector
from .netdev import NetdevCollector
from .procfs import Paths
from .system import TimeCollector, UnameCollector

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
    Setting("labels", allocation_labels, None, "cost allocation labels on mlscope_host_hourly_cost_dollars, "
            "KEY=VALUE[,KEY=VALUE] (file: a mapping), e.g. team=ml-platform,project=search (docs/cost.md)"),
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
        scrape["cost"] = CostCollector(*cost, cfg.labels)
    return Parts(scrape=scrape)


SPEC = ExporterSpec(
    command="host-exporter",
    title="host exporter",
    default_port=9856,
    settings=SETTINGS,
    build=build,
)

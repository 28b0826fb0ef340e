"""node_time_seconds, the time zone and clock sources; node_uname_info; node_os_info."""

from __future__ import annotations

import os
import time
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import Paths, family, gauge, read_optional, read_text, sample


class TimeCollector:
    def __init__(self, paths: Paths):
        self.clocksource_root = paths.sys("devices", "system", "clocksource")

    def _clocksources(self) -> tuple[list[Sample], list[Sample]]:
        available: list[Sample] = []
        current: list[Sample] = []
        try:
            names = sorted(n for n in os.listdir(self.clocksource_root) if n.startswith("clocksource"))
        except OSError:
            return available, current
        for index, name in enumerate(names):
            base = os.path.join(self.clocksource_root, name)
            for clocksource in (read_optional(os.path.join(base, "available_clocksource")) or "").split():
                available.append(sample("node_time_clocksource_available_info",
                                        {"clocksource": clocksource, "device": str(index)}, 1))
            chosen = (read_optional(os.path.join(base, "current_clocksource")) or "").strip()
            if chosen:
                current.append(sample("node_time_clocksource_current_info",
                                      {"clocksource": chosen, "device": str(index)}, 1))
        return available, current

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        yield gauge("node_time_seconds", "System time in seconds since epoch (1970).", now)
        local = time.localtime(now)
        yield family("node_time_zone_offset_seconds", "System time zone offset in seconds.", "gauge",
                     [sample("node_time_zone_offset_seconds", {"time_zone": local.tm_zone}, float(local.tm_gmtoff))])
        available, current = self._clocksources()
        if available:
            yield family("node_time_clocksource_available_info", "Available clocksources read from "
                         "'/sys/devices/system/clocksource'.", "gauge", available)
        if current:
            yield family("node_time_clocksource_current_info", "Current clocksource read from "
                         "'/sys/devices/system/clocksource'.", "gauge", current)


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

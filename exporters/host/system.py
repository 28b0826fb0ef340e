"""node_time_seconds and node_uname_info."""

from __future__ import annotations

import os
import time
from typing import Iterator

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from .procfs import Paths, family, gauge, read_text


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

"""/proc/vmstat: node_vmstat_<field> for node_exporter 1.5's default fields (untyped, as node_exporter)."""

from __future__ import annotations

import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, read_optional, sample

# node_exporter 1.5's --collector.vmstat.fields default
DEFAULT_FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"


class VmstatCollector:
    def __init__(self, paths: Paths, fields: re.Pattern | None = None):
        self.path = paths.proc("vmstat")
        self.fields = fields or re.compile(DEFAULT_FIELDS)

    def collect(self) -> Iterator[Metric]:
        text = read_optional(self.path)
        for line in (text or "").splitlines():
            key, _, value = line.partition(" ")
            if value and self.fields.match(key):
                name = f"node_vmstat_{key}"
                yield family(name, f"/proc/vmstat information field {key}.", "unknown",
                             [sample(name, {}, float(value))])

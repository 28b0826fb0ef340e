"""Netfilter connection tracking: /proc/sys/net/netfilter/nf_conntrack_{count,max} and /proc/net/stat/nf_conntrack.
Without the nf_conntrack module the files are absent and nothing is exported."""

from __future__ import annotations

from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, gauge, read_optional

COUNTS = (
    ("nf_conntrack_count", "node_nf_conntrack_entries", "Number of currently allocated flow entries for connection "
     "tracking."),
    ("nf_conntrack_max", "node_nf_conntrack_entries_limit", "Maximum size of connection tracking table."),
)
# /proc/net/stat/nf_conntrack columns (hex, one row per CPU, summed) -> node_nf_conntrack_stat_<column>
STAT_COLUMNS = ("found", "invalid", "ignore", "insert", "insert_failed", "drop", "early_drop", "search_restart")
STAT_HELP = {
    "found": "Number of searched entries which were successful.",
    "invalid": "Number of packets seen which can not be tracked.",
    "ignore": "Number of packets seen which are already connected to a conntrack entry.",
    "insert": "Number of entries inserted into the list.",
    "insert_failed": "Number of entries for which list insertion was attempted but failed.",
    "drop": "Number of packets dropped due to conntrack failure.",
    "early_drop": "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
    "search_restart": "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
}


def parse_conntrack_stat(text: str) -> dict[str, float]:
    lines = text.splitlines()
    if not lines:
        return {}
    header = lines[0].split()
    totals = dict.fromkeys(STAT_COLUMNS, 0.0)
    for line in lines[1:]:
        for column, value in zip(header, line.split()):
            if column in totals:
                totals[column] += int(value, 16)
    return {column: totals[column] for column in STAT_COLUMNS if column in header}


class ConntrackCollector:
    def __init__(self, paths: Paths):
        self.paths = paths

    def collect(self) -> Iterator[Metric]:
        self.no_data = False
        for file, name, help_ in COUNTS:
            text = read_optional(self.paths.proc("sys", "net", "netfilter", file))
            if text:
                yield gauge(name, help_, float(text))
            else:
                self.no_data = True  # nf_conntrack not loaded
        text = read_optional(self.paths.proc("net", "stat", "nf_conntrack"))
        for column, value in parse_conntrack_stat(text or "").items():
            yield gauge(f"node_nf_conntrack_stat_{column}", STAT_HELP[column], value)

"""/proc/net/netstat, /proc/net/snmp and /proc/net/snmp6: node_netstat_<Protocol>_<Field> (untyped, as
node_exporter), for node_exporter 1.5's default field regexp."""

from __future__ import annotations

import re
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, family, read_optional, sample

# node_exporter 1.5's --collector.netstat.fields default
DEFAULT_FIELDS = (r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
                  r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
                  r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
                  r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$")


def parse_pairs(text: str) -> dict[str, float]:
    """netstat/snmp: a header line 'Tcp: A B' then a value line 'Tcp: 1 2' -> {'Tcp_A': 1, 'Tcp_B': 2}."""
    out: dict[str, float] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        names, numbers = header.split(), values.split()
        if not names or len(names) != len(numbers):
            continue
        protocol = names[0].rstrip(":")
        for name, number in zip(names[1:], numbers[1:]):
            out[f"{protocol}_{name}"] = float(number)
    return out


def parse_snmp6(text: str) -> dict[str, float]:
    """snmp6: 'Ip6InOctets 128' lines -> {'Ip6_InOctets': 128} (split after the protocol's '6')."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        six = parts[0].find("6") if len(parts) >= 2 else -1
        if six != -1:
            out[f"{parts[0][:six + 1]}_{parts[0][six + 1:]}"] = float(parts[1])
    return out


class NetstatCollector:
    def __init__(self, paths: Paths, fields: re.Pattern | None = None):
        self.paths = paths
        self.fields = fields or re.compile(DEFAULT_FIELDS)
        self._keep: dict[str, bool] = {}

    def _wanted(self, key: str) -> bool:
        keep = self._keep.get(key)
        if keep is None:
            keep = self._keep[key] = bool(self.fields.match(key))
        return keep

    def collect(self) -> Iterator[Metric]:
        stats: dict[str, float] = {}
        for file, parse in (("netstat", parse_pairs), ("snmp", parse_pairs), ("snmp6", parse_snmp6)):
            text = read_optional(self.paths.proc("net", file))
            if text:
                stats.update(parse(text))
        for key, value in stats.items():
            if self._wanted(key):
                name = f"node_netstat_{key}"
                protocol, _, field = key.partition("_")
                yield family(name, f"Statistic {protocol}{field}.", "unknown", [sample(name, {}, value)])

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
        self._headers: dict[str, list[tuple[int, str, str]]] = {}

    def _wanted(self, key: str) -> bool:
        keep = self._keep.get(key)
        if keep is None:
            keep = self._keep[key] = bool(self.fields.match(key))
        return keep

    def _columns(self, header: str) -> list[tuple[int, str, str]]:
        """[(column, key, help)] of the wanted fields of a netstat/snmp header line (the same every scrape)."""
        columns = self._headers.get(header)
        if columns is None:
            names = header.split()
            protocol = names[0].rstrip(":") if names else ""
            columns = [(i, f"{protocol}_{name}", f"Statistic {protocol}{name}.") for i, name in enumerate(names)
                       if i and self._wanted(f"{protocol}_{name}")]
            self._headers[header] = columns
        return columns

    def collect(self) -> Iterator[Metric]:
        stats: dict[str, tuple[float, str]] = {}
        for file in ("netstat", "snmp"):
            lines = (read_optional(self.paths.proc("net", file)) or "").splitlines()
            for header, values in zip(lines[::2], lines[1::2]):
                numbers = values.split()
                if len(numbers) == len(header.split()):
                    for column, key, help_ in self._columns(header):
                        stats[key] = (float(numbers[column]), help_)
        for key, value in parse_snmp6(read_optional(self.paths.proc("net", "snmp6")) or "").items():
            if self._wanted(key):
                protocol, _, field = key.partition("_")
                stats[key] = (value, f"Statistic {protocol}{field}.")
        for key, (value, help_) in stats.items():
            name = f"node_netstat_{key}"
            yield family(name, help_, "unknown", [sample(name, {}, value)])

"""/proc/mdstat: Linux software RAID (md) devices, as node_exporter 1.5's mdadm collector (procfs 0.8's parser)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from prometheus_client.core import Metric

from .procfs import Paths, families_of, read_optional, sample

STATUS = re.compile(r"(\d+) blocks .*\[(\d+)/(\d+)\] \[([U_]+)\]")
SYNCED = re.compile(r"\((\d+)/\d+\)")
# node_exporter's state label -> the activity state that sets it to 1
STATES = (("active", "active"), ("inactive", "inactive"), ("recovering", "recovering"), ("resync", "resyncing"),
          ("check", "checking"))
TABLE = (
    ("node_md_disks_required", "Total number of disks of device.", "gauge"),
    ("node_md_disks", "Number of active/failed/spare disks of device.", "gauge"),
    ("node_md_state", "Indicates the state of md-device.", "gauge"),
    ("node_md_blocks", "Total number of blocks on device.", "gauge"),
    ("node_md_blocks_synced", "Number of blocks synced on device.", "gauge"),
)


@dataclass
class MD:
    name: str
    state: str
    active: int
    total: int
    failed: int
    spare: int
    blocks: int
    synced: int


def parse_mdstat(text: str) -> list[MD]:
    """Raises ValueError on a line it cannot read (node_exporter then fails the collector too)."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip() or line[0] == " " or line.startswith(("Personalities", "unused")):
            continue
        fields = line.split()
        if len(fields) < 3 or len(lines) <= i + 3:
            raise ValueError(f"cannot parse md device line {line!r}")
        name, state = fields[0], fields[2]
        status = lines[i + 1]
        blocks = int(status.split()[0])
        if "raid0" in line or "linear" in line:
            active = total = line.count("[")
        elif "inactive" in line:
            active = total = 0
        else:
            match = STATUS.search(status)
            if not match:
                raise ValueError(f"cannot parse md status line {status!r}")
            total, active = int(match.group(2)), int(match.group(3))
        sync_line = lines[i + 3] if "bitmap" in lines[i + 2] else lines[i + 2]
        synced = blocks
        for word, activity in (("recovery", "recovering"), ("check", "checking"), ("resync", "resyncing")):
            if word in sync_line:
                state = activity
                break
        if state in ("recovering", "checking", "resyncing"):
            if "PENDING" in sync_line or "DELAYED" in sync_line:
                synced = 0
            else:
                match = SYNCED.search(sync_line)
                if not match:
                    raise ValueError(f"cannot parse md sync line {sync_line!r}")
                synced = int(match.group(1))
        out.append(MD(name, state, active, total, line.count("(F)"), line.count("(S)"), blocks, synced))
    return out


class MdadmCollector:
    def __init__(self, paths: Paths):
        self.path = paths.proc("mdstat")

    def collect(self) -> Iterator[Metric]:
        text = read_optional(self.path)
        self.no_data = text is None  # no md driver
        if text is None:
            return
        columns: dict[str, list] = {name: [] for name, _, _ in TABLE}
        for md in parse_mdstat(text):
            device = {"device": md.name}
            columns["node_md_disks_required"].append(sample("node_md_disks_required", device, float(md.total)))
            for state, count in (("active", md.active), ("failed", md.failed), ("spare", md.spare)):
                columns["node_md_disks"].append(sample("node_md_disks", {**device, "state": state}, float(count)))
            for label, activity in STATES:
                columns["node_md_state"].append(sample("node_md_state", {**device, "state": label},
                                                       1.0 if md.state == activity else 0.0))
            columns["node_md_blocks"].append(sample("node_md_blocks", device, float(md.blocks)))
            columns["node_md_blocks_synced"].append(sample("node_md_blocks_synced", device, float(md.synced)))
        yield from families_of(TABLE, columns)

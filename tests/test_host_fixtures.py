"""MLScope and the real node_exporter 1.5 on node_exporter's own test host: its fixture /proc and /sys
(tests/data/node_exporter_fixtures, from node_exporter v1.5.0, Apache-2.0) describe a machine with many disks,
NICs, a bond, RAID arrays, hwmon sensors, thermal zones, power supplies, cpufreq, EDAC, RAPL, NVMe, DMI and
InfiniBand that this machine does not have. Both exporters read the same frozen files, so every series must be equal, collector by collector.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import helpers

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "data" / "node_exporter_fixtures"
# The collectors that read only --path.procfs/--path.sysfs (netdev uses netlink in node_exporter, filesystem
# statfs of real mounts, time/timex/uname/os the running system).
COLLECTORS = ["arp", "bonding", "conntrack", "cpu", "cpufreq", "diskstats", "dmi", "edac", "entropy", "filefd",
              "hwmon", "infiniband", "loadavg", "mdadm", "meminfo", "netclass", "netstat", "nvme", "powersupplyclass",
              "pressure", "rapl", "schedstat", "sockstat", "softnet", "stat", "thermal_zone", "udp_queues", "vmstat"]
NOT_COMPARED = re.compile(r"^(go_|process_|promhttp_|node_exporter_build_info|mlscope_|node_scrape_collector_duration)")


def ttar_extract(archive: Path, dest: Path) -> None:
    """Unpack a ttar archive (node_exporter's text archive of its sysfs fixtures): Directory/Path/SymlinkTo/
    Lines entries; a line ending in an unescaped EOF ends its file without a newline, NULLBYTE is a NUL."""
    lines = archive.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
    path, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Directory: "):
            (dest / line[11:]).mkdir(parents=True, exist_ok=True)
        elif line.startswith("Path: "):
            path = line[6:]
        elif line.startswith("SymlinkTo: "):
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(line[11:], dest / path)
        elif line.startswith("Lines: "):
            count = int(line[7:].split()[0])
            out = []
            for raw in lines[i + 1:i + 1 + count]:
                ends = re.search(r"(?<!\\)EOF$", raw) is not None
                raw = re.sub(r"(?<!\\)EOF$", "", raw).replace("\\EOF", "EOF")
                raw = re.sub(r"(?<!\\)NULLBYTE", "\0", raw).replace("\\NULLBYTE", "NULLBYTE")
                out.append(raw if ends else raw + "\n")
            i += count
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_text("".join(out), encoding="utf-8", errors="surrogateescape")
        i += 1


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixture-host")
    shutil.copytree(FIXTURES / "proc", root / "proc")
    ttar_extract(FIXTURES / "sys.ttar", root)
    paths = [f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}"]
    switches = ["--collector.disable-defaults", *(f"--collector.{c}" for c in COLLECTORS)]
    binary = helpers.require_binary("prometheus-node-exporter")
    port = helpers.free_port()
    node_exporter = helpers.Process([binary, f"--web.listen-address=127.0.0.1:{port}", *paths, *switches,
                                     "--collector.netclass.ignored-devices=^$"])
    try:
        node_exporter.wait_http(f"http://127.0.0.1:{port}/metrics")
        theirs = helpers.samples(helpers.scrape(f"http://127.0.0.1:{port}"))
    finally:
        node_exporter.stop()
    ours, url = helpers.start_exporter("host-exporter", *paths, *switches)
    try:
        mine = helpers.samples(helpers.scrape(url))
    finally:
        ours.stop()
    return theirs, mine


def by_labels(parsed: dict, name: str) -> dict[tuple, float]:
    return {tuple(sorted(lbls.items())): v for lbls, v in parsed.get(name, [])}


@pytest.mark.parametrize("collector", COLLECTORS)
def test_each_collector_serves_node_exporters_series_on_its_fixture_host(both, collector):
    theirs, mine = both
    ok = {dict(k)["collector"]: v for k, v in by_labels(theirs, "node_scrape_collector_success").items()}
    assert by_labels(mine, "node_scrape_collector_success").get((("collector", collector),)) == ok[collector]


def test_every_series_equal_on_the_fixture_host(both):
    theirs, mine = both
    # the fixture host really has what this machine lacks, so the comparison below is not vacuous
    for name in ("node_hwmon_temp_celsius", "node_md_disks", "node_bonding_slaves", "node_cpu_scaling_frequency_hertz",
                 "node_thermal_zone_temp", "node_power_supply_online", "node_edac_correctable_errors_total",
                 "node_schedstat_running_seconds_total", "node_rapl_package_joules_total", "node_nvme_info",
                 "node_dmi_info", "node_cpu_core_throttles_total", "node_network_speed_bytes",
                 "node_infiniband_port_data_received_bytes_total"):
        assert theirs.get(name), name
    names = sorted(n for n in theirs if not NOT_COMPARED.match(n))
    missing = [n for n in names if n not in mine]
    extra = sorted(n for n in mine if not NOT_COMPARED.match(n) and n not in theirs)
    different = []
    for name in names:
        if name in mine:
            a, b = by_labels(theirs, name), by_labels(mine, name)
            if set(a) != set(b) or any(abs(a[k] - b[k]) > 1e-9 * max(1.0, abs(a[k])) for k in a):
                different.append(name)
    assert (missing, extra, different) == ([], [], []), (missing, extra, different)

"""Host exporter beside the real node_exporter (same numbers) and scraped by the real Prometheus."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import helpers
from mlscope.host import diskstats, filesystem

pytestmark = pytest.mark.integration

# Debian patches node_exporter's defaults (it also drops /run, /mnt, /media and `lo`); give it upstream
# 1.5.0's defaults, which are ours, so both should report exactly the same filesystems and interfaces.
NODE_EXPORTER_ARGS = [
    "--collector.disable-defaults",
    *(f"--collector.{c}" for c in ("cpu", "stat", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "time",
                                   "uname")),
    f"--collector.filesystem.mount-points-exclude={filesystem.DEFAULT_MOUNT_POINTS_EXCLUDE}",
    f"--collector.filesystem.fs-types-exclude={filesystem.DEFAULT_FS_TYPES_EXCLUDE}",
    f"--collector.diskstats.device-exclude={diskstats.DEFAULT_DISK_DEVICE_EXCLUDE}",
    "--collector.netdev.device-exclude=",
]


@pytest.fixture(scope="module")
def both():
    binary = helpers.require_binary("prometheus-node-exporter")
    port = helpers.free_port()
    node_exporter = helpers.Process([binary, f"--web.listen-address=127.0.0.1:{port}", *NODE_EXPORTER_ARGS])
    ne_url = f"http://127.0.0.1:{port}"
    try:
        node_exporter.wait_http(ne_url + "/metrics")
        ours, our_url = helpers.start_exporter("host-exporter")
    except BaseException:
        node_exporter.stop()
        raise
    # node_exporter, ours, node_exporter: every counter we report must lie between node_exporter's two readings.
    before = helpers.samples(helpers.scrape(ne_url))
    mine = helpers.samples(helpers.scrape(our_url))
    after = helpers.samples(helpers.scrape(ne_url))
    yield before, mine, after
    ours.stop()
    node_exporter.stop()


def by_labels(parsed: dict, name: str) -> dict[tuple, float]:
    return {tuple(sorted(lbls.items())): v for lbls, v in parsed.get(name, [])}


def assert_bracketed(before: dict, mine: dict, after: dict, name: str, slack: float = 0.0) -> None:
    b, m, a = by_labels(before, name), by_labels(mine, name), by_labels(after, name)
    assert m, f"we report no {name}"
    assert set(m) == set(b) == set(a), (name, sorted(set(m) ^ set(b)))
    for key, value in m.items():
        assert b[key] - slack <= value <= a[key] + slack, (name, dict(key), b[key], value, a[key])


def test_memory_is_exactly_node_exporters(both):
    before, mine, after = both
    for field in ("MemTotal", "SwapTotal"):
        name = f"node_memory_{field}_bytes"
        assert helpers.value(mine, name) == helpers.value(before, name) == helpers.value(after, name)
    # Every meminfo field node_exporter exports, we export under the same name.
    ne_names = {n for n in before if n.startswith("node_memory_")}
    assert ne_names == {n for n in mine if n.startswith("node_memory_")}


def test_filesystems_are_the_same_set_with_the_same_sizes(both):
    before, mine, after = both
    for name in ("node_filesystem_size_bytes", "node_filesystem_readonly", "node_filesystem_files"):
        ours, theirs = by_labels(mine, name), by_labels(before, name)
        assert ours, name
        assert ours == theirs, name


def test_boot_time_and_uname(both):
    before, mine, _ = both
    assert abs(helpers.value(mine, "node_boot_time_seconds") - helpers.value(before, "node_boot_time_seconds")) <= 1
    assert by_labels(mine, "node_uname_info") == by_labels(before, "node_uname_info")


def test_cpu_seconds_per_cpu_and_mode(both):
    before, mine, after = both
    # /proc/stat's iowait may step back a tick; a 0.05 s slack still catches any mode or unit mix-up.
    assert_bracketed(before, mine, after, "node_cpu_seconds_total", slack=0.05)
    assert_bracketed(before, mine, after, "node_cpu_guest_seconds_total", slack=0.05)
    assert_bracketed(before, mine, after, "node_context_switches_total")


def test_network_counters_including_lo(both):
    before, mine, after = both
    for name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total",
                 "node_network_receive_errs_total", "node_network_transmit_errs_total",
                 "node_network_receive_packets_total"):
        assert_bracketed(before, mine, after, name)
    assert ("device", "lo") in {k[0] for k in by_labels(mine, "node_network_receive_bytes_total")}


def test_disk_counters(both):
    before, mine, after = both
    for name in ("node_disk_reads_completed_total", "node_disk_writes_completed_total",
                 "node_disk_io_time_seconds_total"):
        assert_bracketed(before, mine, after, name)
    # node_exporter 1.5 multiplies sectors by the device's logical block size, the kernel counts 512-byte
    # sectors; the two agree on the (usual) 512-byte devices.
    sector_512 = {d for d in os.listdir("/sys/block")
                  if Path(f"/sys/block/{d}/queue/logical_block_size").read_text().strip() == "512"}
    for name in ("node_disk_read_bytes_total", "node_disk_written_bytes_total"):
        b, m, a = (by_labels(x, name) for x in (before, mine, after))
        assert set(m) == set(b)
        for key, value in m.items():
            if dict(key)["device"] in sector_512:
                assert b[key] <= value <= a[key], (name, key)


def test_prometheus_scrapes_it_and_answers_promql(tmp_path):
    ours, base = helpers.start_exporter("host-exporter", "--hourly-cost-dollars", "1.25")
    target = base.removeprefix("http://")
    prom = helpers.Prometheus({"global": {"scrape_interval": "1s"},
                               "scrape_configs": [helpers.scrape_config("host", [target])]}, tmp_path)
    try:
        up = prom.wait_for('up{job="host"} == 1')
        assert up[0]["metric"]["instance"] == target
        mem = prom.wait_for("node_memory_MemTotal_bytes")
        meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
        assert len(mem) == 1 and float(mem[0]["value"][1]) == meminfo["MemTotal"] * 1024
        cpus = sum(1 for line in Path("/proc/stat").read_text().splitlines() if re.match(r"cpu\d", line))
        rates = prom.wait_for('rate(node_cpu_seconds_total{job="host"}[5s])', min_results=cpus * 8)
        assert {r["metric"]["mode"] for r in rates} == {"user", "nice", "system", "idle", "iowait", "irq", "softirq",
                                                        "steal"}
        assert all(float(r["value"][1]) >= 0 for r in rates), rates  # counters: no resets seen by rate()
        cost = prom.wait_for("mlscope_host_hourly_cost_dollars")
        assert float(cost[0]["value"][1]) == 1.25
        assert prom.query("mlscope_collector_up == 0") == []
    finally:
        prom.stop()
        ours.stop()

"""Host exporter beside the real node_exporter (same numbers) and scraped by the real Prometheus."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import helpers
from mlscope import host
from mlscope.host import diskstats, filesystem

pytestmark = pytest.mark.integration

# Debian patches node_exporter's defaults (it also drops /run, /mnt, /media and `lo`); give it upstream
# 1.5.0's defaults, which are ours, so both should report exactly the same filesystems and interfaces.
# Exactly our collectors: node_exporter's others (hwmon, xfs, ...) have no MLScope counterpart yet.
NODE_EXPORTER_ARGS = [
    "--collector.disable-defaults",
    *(f"--collector.{c}" for c in host.COLLECTORS),
    f"--collector.filesystem.mount-points-exclude={filesystem.DEFAULT_MOUNT_POINTS_EXCLUDE}",
    f"--collector.filesystem.fs-types-exclude={filesystem.DEFAULT_FS_TYPES_EXCLUDE}",
    f"--collector.diskstats.device-exclude={diskstats.DEFAULT_DISK_DEVICE_EXCLUDE}",
    "--collector.netdev.device-exclude=",
]


TEXTFILE = """# HELP backup_last_success_timestamp_seconds When the nightly backup last succeeded.
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds{job="db"} 1.7e+09
# TYPE raid_degraded gauge
raid_degraded{md="md0"} 0
raid_degraded{md="md1"} 1
"""
# Go's runtime and HTTP handler, and node_exporter's own build: nothing an MLScope user's query reads.
NOT_OURS = re.compile(r"^(go_|promhttp_|node_exporter_build_info)")


@pytest.fixture(scope="module")
def textfile_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("textfile")
    (directory / "backup.prom").write_text(TEXTFILE)
    (directory / "notes.txt").write_text("not a .prom file: ignored\n")
    return directory


@pytest.fixture(scope="module")
def both(textfile_dir):
    binary = helpers.require_binary("prometheus-node-exporter")
    port = helpers.free_port()
    node_exporter = helpers.Process([binary, f"--web.listen-address=127.0.0.1:{port}", *NODE_EXPORTER_ARGS,
                                     f"--collector.textfile.directory={textfile_dir}"])
    ne_url = f"http://127.0.0.1:{port}"
    try:
        node_exporter.wait_http(ne_url + "/metrics")
        ours, our_url = helpers.start_exporter("host-exporter", f"--collector.textfile.directory={textfile_dir}")
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


def names(parsed: dict) -> set[str]:
    return {n for n in parsed if not NOT_OURS.match(n)}


def test_every_series_name_node_exporter_serves_with_these_collectors_we_serve(both):
    before, mine, _ = both
    assert names(before) - names(mine) == set()
    # and nothing node_exporter would not serve, apart from MLScope's self-metrics
    assert {n for n in names(mine) - names(before) if not n.startswith("mlscope_")} == set()


def test_every_collector_succeeds_on_both(both):
    before, mine, _ = both
    # the same 0/1 per collector: 0 where node_exporter finds nothing to read on this machine (no RAID, no hwmon)
    assert by_labels(mine, "node_scrape_collector_success") == by_labels(before, "node_scrape_collector_success")
    assert set(by_labels(mine, "mlscope_collector_up").values()) == {1.0}  # which MLScope does not count as errors
    assert {dict(k)["collector"] for k in by_labels(mine, "node_scrape_collector_duration_seconds")} == set(
        host.COLLECTORS)


@pytest.mark.parametrize("name", [
    "node_vmstat_pgfault", "node_vmstat_pgpgout", "node_vmstat_oom_kill", "node_vmstat_pswpin",
    "node_pressure_cpu_waiting_seconds_total", "node_pressure_io_waiting_seconds_total",
    "node_pressure_memory_stalled_seconds_total",
    "node_netstat_Tcp_ActiveOpens", "node_netstat_Tcp_InSegs", "node_netstat_IpExt_InOctets",
    "node_netstat_Udp_InDatagrams", "node_netstat_Ip6_InOctets", "node_netstat_TcpExt_ListenDrops",
    "node_softnet_processed_total", "node_softnet_dropped_total",
    "node_disk_discards_completed_total", "node_disk_flush_requests_total", "node_disk_discard_time_seconds_total",
    "node_network_receive_nohandler_total", "node_timex_pps_calibration_total",
])
def test_counters_lie_between_node_exporters_readings(both, name):
    before, mine, after = both
    if name not in before:
        pytest.skip(f"this kernel has no {name}")  # e.g. no PSI, no flush accounting
    assert_bracketed(before, mine, after, name)


def test_static_values_are_exactly_node_exporters(both):
    before, mine, after = both
    exact = ["node_filefd_maximum", "node_entropy_pool_size_bits", "node_nf_conntrack_entries_limit",
             "node_timex_status", "node_timex_tick_seconds", "node_timex_loop_time_constant",
             "node_timex_sync_status", "node_timex_tai_offset_seconds", "node_time_zone_offset_seconds",
             "node_time_clocksource_current_info", "node_time_clocksource_available_info", "node_os_info",
             "node_os_version", "node_disk_info", "node_arp_entries", "node_sockstat_FRAG_inuse",
             "node_netstat_Ip_Forwarding", "node_udp_queues"]
    exact += sorted(n for n in before if n.startswith("node_network_") and not n.endswith("_total"))
    for name in exact:
        if name in before:
            assert by_labels(mine, name) == by_labels(before, name), name
    # the netclass families are all there (their set is the interfaces in /sys/class/net)
    assert by_labels(mine, "node_network_mtu_bytes") and by_labels(mine, "node_network_info")


def test_gauges_that_move_are_close(both):
    before, mine, after = both
    allocated = (helpers.value(before, "node_filefd_allocated"), helpers.value(after, "node_filefd_allocated"))
    assert min(allocated) - 64 <= helpers.value(mine, "node_filefd_allocated") <= max(allocated) + 64
    sockets = (helpers.value(before, "node_sockstat_sockets_used"), helpers.value(after, "node_sockstat_sockets_used"))
    assert min(sockets) - 16 <= helpers.value(mine, "node_sockstat_sockets_used") <= max(sockets) + 16
    assert helpers.value(mine, "node_sockstat_TCP_mem_bytes") == helpers.value(mine, "node_sockstat_TCP_mem") * 4096
    assert abs(helpers.value(mine, "node_timex_maxerror_seconds")
               - helpers.value(before, "node_timex_maxerror_seconds")) <= 1
    assert abs(helpers.value(mine, "node_timex_frequency_adjustment_ratio")
               - helpers.value(before, "node_timex_frequency_adjustment_ratio")) < 1e-6


def test_textfile_directory_is_read_like_node_exporter(both, textfile_dir):
    before, mine, _ = both
    for name in ("backup_last_success_timestamp_seconds", "raid_degraded", "node_textfile_mtime_seconds"):
        assert by_labels(mine, name) == by_labels(before, name), name
    assert helpers.value(mine, "raid_degraded", md="md1") == 1
    assert helpers.value(mine, "node_textfile_mtime_seconds", file=str(textfile_dir / "backup.prom")) == int(
        (textfile_dir / "backup.prom").stat().st_mtime)
    assert helpers.value(mine, "node_textfile_scrape_error") == helpers.value(before, "node_textfile_scrape_error") == 0


def test_a_broken_textfile_sets_the_scrape_error_on_both(tmp_path):
    (tmp_path / "good.prom").write_text("good_metric 1\n")
    (tmp_path / "bad.prom").write_text("this is { not prometheus text\n")
    (tmp_path / "stamped.prom").write_text("stamped_metric 1 1700000000000\n")
    binary = helpers.require_binary("prometheus-node-exporter")
    port = helpers.free_port()
    args = [f"--collector.textfile.directory={tmp_path}"]
    node_exporter = helpers.Process([binary, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                                     "--collector.textfile", *args])
    try:
        node_exporter.wait_http(f"http://127.0.0.1:{port}/metrics")
        ours, url = helpers.start_exporter("host-exporter", "--collector.disable-defaults", "--collector.textfile",
                                           *args)
        try:
            mine = helpers.samples(helpers.scrape(url))
        finally:
            ours.stop()
        theirs = helpers.samples(helpers.scrape(f"http://127.0.0.1:{port}"))
    finally:
        node_exporter.stop()
    for parsed in (mine, theirs):
        assert helpers.value(parsed, "node_textfile_scrape_error") == 1
        assert helpers.value(parsed, "good_metric") == 1
        assert "stamped_metric" not in parsed
        assert {lbl["file"] for lbl, _ in parsed["node_textfile_mtime_seconds"]} == {str(tmp_path / "good.prom")}
    assert names(mine) - {n for n in names(mine) if n.startswith("mlscope_")} == names(theirs)


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

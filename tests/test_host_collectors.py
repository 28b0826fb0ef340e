"""node_exporter's default collectors on hand-made /proc and /sys trees: hand-computed values, and a kernel
without a feature (no PSI, no conntrack, no IPv6) giving no series rather than an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import helpers
from mlscope import host
from mlscope.host import (arp, conntrack, entropy, filefd, netclass, netstat, pressure, procfs, sockstat, softnet,
                          textfile, udp_queues, vmstat)
from mlscope.settings import resolve


def collect(collector) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return helpers.samples(generate_latest(registry).decode())


@pytest.fixture
def paths(tmp_path) -> procfs.Paths:
    return procfs.Paths(procfs=str(tmp_path / "proc"), sysfs=str(tmp_path / "sys"), rootfs=str(tmp_path / "root"))


def write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def test_every_collector_on_an_empty_host_exports_nothing_and_does_not_fail(paths):
    for name in ("stat", "meminfo", "loadavg", "diskstats", "mounts"):  # what the proc backend insists on
        write(paths.proc(name), "")
    cfg = resolve(host.SETTINGS, {})
    for name, factory in host.COLLECTORS.items():
        if name in ("cpu", "stat", "meminfo", "loadavg", "diskstats", "netdev", "filesystem", "uname", "time",
                    "timex", "textfile"):
            continue  # the always-present kernel files, the syscalls, and textfile's own error metric
        assert collect(factory(paths, cfg)) == {}, name


def test_pressure_total_microseconds_to_seconds_and_irq_only_when_present(paths):
    write(paths.proc("pressure", "cpu"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\n"
                                         "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    write(paths.proc("pressure", "io"), "some avg10=1.00 avg60=0.00 avg300=0.00 total=1500000\n"
                                        "full avg10=0.50 avg60=0.00 avg300=0.00 total=750000\n")
    got = collect(pressure.PressureCollector(paths))
    assert helpers.value(got, "node_pressure_cpu_waiting_seconds_total") == 2.5
    assert helpers.value(got, "node_pressure_io_waiting_seconds_total") == 1.5
    assert helpers.value(got, "node_pressure_io_stalled_seconds_total") == 0.75
    assert "node_pressure_memory_waiting_seconds_total" not in got and "node_pressure_irq_stalled_seconds_total" \
        not in got
    write(paths.proc("pressure", "irq"), "full avg10=0.00 avg60=0.00 avg300=0.00 total=42000\n")
    assert helpers.value(collect(pressure.PressureCollector(paths)), "node_pressure_irq_stalled_seconds_total") == 0.042


def test_vmstat_default_fields_only(paths):
    write(paths.proc("vmstat"), "nr_free_pages 100\npgpgin 7\npgfault 9\npgmajfault 2\noom_kill 1\npswpout 3\n"
                                "pgsteal_kswapd 5\n")
    got = collect(vmstat.VmstatCollector(paths))
    assert {n: v for n, [(_, v)] in got.items()} == {"node_vmstat_pgpgin": 7, "node_vmstat_pgfault": 9,
                                                     "node_vmstat_pgmajfault": 2, "node_vmstat_oom_kill": 1,
                                                     "node_vmstat_pswpout": 3}


def test_netstat_pairs_snmp6_and_default_fields(paths):
    write(paths.proc("net", "netstat"), "TcpExt: SyncookiesSent ListenDrops DelayedACKs\nTcpExt: 1 2 3\n"
                                        "IpExt: InOctets OutOctets\nIpExt: 100 200\n")
    write(paths.proc("net", "snmp"), "Tcp: RtoAlgorithm ActiveOpens InErrs CurrEstab\nTcp: 1 10 0 4\n"
                                     "Udp: InDatagrams NoPorts\nUdp: 5 6\n")
    write(paths.proc("net", "snmp6"), "Ip6InOctets                     128\nUdp6InDatagrams 3\nIcmp6InMsgs 1\n"
                                      "Ip6InReceives 9\n")
    got = collect(netstat.NetstatCollector(paths))
    assert {n: v for n, [(_, v)] in got.items()} == {
        "node_netstat_TcpExt_SyncookiesSent": 1, "node_netstat_TcpExt_ListenDrops": 2, "node_netstat_IpExt_InOctets":
        100, "node_netstat_IpExt_OutOctets": 200, "node_netstat_Tcp_ActiveOpens": 10, "node_netstat_Tcp_InErrs": 0,
        "node_netstat_Tcp_CurrEstab": 4, "node_netstat_Udp_InDatagrams": 5, "node_netstat_Udp_NoPorts": 6,
        "node_netstat_Ip6_InOctets": 128, "node_netstat_Udp6_InDatagrams": 3, "node_netstat_Icmp6_InMsgs": 1}


def test_sockstat_v4_and_v6_with_mem_in_bytes(paths):
    write(paths.proc("net", "sockstat"), "sockets: used 28\nTCP: inuse 10 orphan 1 tw 2 alloc 12 mem 3\n"
                                         "UDP: inuse 4 mem 5\nFRAG: inuse 0 memory 0\n")
    write(paths.proc("net", "sockstat6"), "TCP6: inuse 7\nUDP6: inuse 1\n")
    got = collect(sockstat.SockstatCollector(paths))
    assert helpers.value(got, "node_sockstat_sockets_used") == 28
    assert helpers.value(got, "node_sockstat_TCP_tw") == 2
    assert helpers.value(got, "node_sockstat_TCP_mem_bytes") == 3 * sockstat.PAGE_SIZE
    assert helpers.value(got, "node_sockstat_UDP_mem_bytes") == 5 * sockstat.PAGE_SIZE
    assert helpers.value(got, "node_sockstat_FRAG_memory") == 0
    assert helpers.value(got, "node_sockstat_TCP6_inuse") == 7
    assert "node_sockstat_TCP6_mem_bytes" not in got


def test_softnet_conntrack_and_udp_queues_read_hex(paths):
    write(paths.proc("net", "softnet_stat"), "0000001a 00000002 00000010 00000000\n000000ff 00000000 00000001 0\n")
    got = collect(softnet.SoftnetCollector(paths))
    assert helpers.value(got, "node_softnet_processed_total", cpu="0") == 26
    assert helpers.value(got, "node_softnet_processed_total", cpu="1") == 255
    assert helpers.value(got, "node_softnet_times_squeezed_total", cpu="0") == 16

    write(paths.proc("sys", "net", "netfilter", "nf_conntrack_count"), "17\n")
    write(paths.proc("sys", "net", "netfilter", "nf_conntrack_max"), "65536\n")
    write(paths.proc("net", "stat", "nf_conntrack"), "entries  searched found new invalid ignore delete "
          "delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete "
          "search_restart\n00000011  00000000 0000000a 0 00000003 00000000 0 0 00000001 0 0 0 0 0 0 0 00000002\n"
          "00000011  00000000 00000005 0 00000001 00000000 0 0 00000001 0 0 0 0 0 0 0 00000000\n")
    got = collect(conntrack.ConntrackCollector(paths))
    assert helpers.value(got, "node_nf_conntrack_entries") == 17
    assert helpers.value(got, "node_nf_conntrack_entries_limit") == 65536
    assert helpers.value(got, "node_nf_conntrack_stat_found") == 15  # 0xa + 0x5, summed over CPUs
    assert helpers.value(got, "node_nf_conntrack_stat_invalid") == 4
    assert helpers.value(got, "node_nf_conntrack_stat_search_restart") == 2

    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    write(paths.proc("net", "udp"), header + "  0: 00000000:0044 00000000:0000 07 00000010:00000200 00:00000000 "
          "00000000 0 0 1 2\n  1: 00000000:0045 00000000:0000 07 00000001:00000000 00:00000000 00000000 0 0 1 2\n")
    got = collect(udp_queues.UdpQueuesCollector(paths))
    assert helpers.value(got, "node_udp_queues", ip="v4", queue="tx") == 17
    assert helpers.value(got, "node_udp_queues", ip="v4", queue="rx") == 512
    assert not [lbl for lbl, _ in got["node_udp_queues"] if lbl["ip"] == "v6"]  # no IPv6: no v6 series


def test_filefd_entropy_arp(paths):
    write(paths.proc("sys", "fs", "file-nr"), "1001\t0\t2466177\n")
    write(paths.proc("sys", "kernel", "random", "entropy_avail"), "256\n")
    write(paths.proc("sys", "kernel", "random", "poolsize"), "256\n")
    write(paths.proc("net", "arp"), "IP address       HW type     Flags       HW address            Mask     Device\n"
          "10.0.0.1 0x1 0x2 02:00:00:00:00:01 * eth0\n10.0.0.2 0x1 0x2 02:00:00:00:00:02 * eth0\n"
          "10.1.0.1 0x1 0x2 02:00:00:00:00:03 * eth1\n")
    assert helpers.value(collect(filefd.FilefdCollector(paths)), "node_filefd_maximum") == 2466177
    assert helpers.value(collect(entropy.EntropyCollector(paths)), "node_entropy_available_bits") == 256
    got = collect(arp.ArpCollector(paths))
    assert helpers.value(got, "node_arp_entries", device="eth0") == 2
    assert helpers.value(got, "node_arp_entries", device="eth1") == 1


def test_netclass_reads_sysfs_and_leaves_out_what_errors(paths):
    eth0 = paths.sys("class", "net", "eth0")
    for file, text in {"operstate": "up", "address": "02:00:00:00:00:01", "broadcast": "ff:ff:ff:ff:ff:ff",
                       "duplex": "full", "ifalias": "", "mtu": "9001", "speed": "25000", "flags": "0x1003",
                       "carrier": "1", "carrier_changes": "2", "ifindex": "2", "type": "1"}.items():
        write(f"{eth0}/{file}", text + "\n")
    write(paths.sys("class", "net", "bonding_masters"), "bond0\n")  # a file, not a device
    got = collect(netclass.NetclassCollector(paths))
    assert helpers.value(got, "node_network_up", device="eth0") == 1
    assert helpers.value(got, "node_network_speed_bytes", device="eth0") == 25000 * 125000  # 25 Gbit/s
    assert helpers.value(got, "node_network_flags", device="eth0") == 0x1003
    assert helpers.value(got, "node_network_mtu_bytes", device="eth0") == 9001
    assert helpers.value(got, "node_network_info", device="eth0", duplex="full", operstate="up") == 1
    assert "node_network_dormant" not in got  # no file: no series
    assert {lbl["device"] for lbl, _ in got["node_network_up"]} == {"eth0"}


def test_textfile_merges_files_skips_broken_ones_and_counts_the_error(tmp_path):
    (tmp_path / "a.prom").write_text("# TYPE jobs_total counter\njobs_total{queue=\"a\"} 3\n")
    (tmp_path / "b.prom").write_text("# TYPE jobs_total counter\njobs_total{queue=\"b\"} 4\n")
    got = collect(textfile.TextfileCollector(str(tmp_path)))
    assert helpers.value(got, "jobs_total", queue="a") == 3 and helpers.value(got, "jobs_total", queue="b") == 4
    assert helpers.value(got, "node_textfile_scrape_error") == 0
    (tmp_path / "c.prom").write_text("# TYPE jobs_total counter\njobs_total{queue=\"a\"} 9\n")  # a duplicate series
    got = collect(textfile.TextfileCollector(str(tmp_path)))
    assert helpers.value(got, "jobs_total", queue="a") == 3
    assert helpers.value(got, "node_textfile_scrape_error") == 1
    got = collect(textfile.TextfileCollector(str(tmp_path / "missing")))
    assert got == {"node_textfile_scrape_error": [({}, 1.0)]}
    assert collect(textfile.TextfileCollector(None)) == {"node_textfile_scrape_error": [({}, 0.0)]}


@pytest.mark.parametrize("flags, expected", [
    ({}, set(host.COLLECTORS)),
    ({"collector_disable_defaults": "true", "collector_cpu": "true", "collector_meminfo": "true"}, {"cpu", "meminfo"}),
    ({"collector_vmstat": "false", "collector_arp": "false"}, set(host.COLLECTORS) - {"vmstat", "arp"}),
])
def test_collector_switches_follow_node_exporters_rule(flags, expected):
    assert set(host.enabled_collectors(resolve(host.SETTINGS, flags, environ={}))) == expected


def test_node_exporter_flags_work_in_a_running_exporter(tmp_path):
    (tmp_path / "x.prom").write_text("from_textfile 42\n")
    port = helpers.free_port()
    proc = helpers.Process(helpers.mlscope_args(
        "host-exporter", f"--web.listen-address=127.0.0.1:{port}", "--path.procfs=/proc", "--path.sysfs", "/sys",
        "--path.rootfs=/", "--collector.disable-defaults", "--collector.loadavg", "--collector.netclass",
        "--no-collector.netclass", f"--collector.textfile.directory={tmp_path}", "--collector.textfile",
        "--collector.filesystem.mount-points-exclude=^/(dev|proc|sys)($|/)"), cwd=helpers.ROOT)
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/-/healthy")
        got = helpers.samples(helpers.scrape(f"http://127.0.0.1:{port}"))
    finally:
        proc.stop()
    assert {lbl["collector"] for lbl, _ in got["node_scrape_collector_success"]} == {"loadavg", "textfile"}
    assert helpers.value(got, "from_textfile") == 42
    assert "node_cpu_seconds_total" not in got and "node_network_mtu_bytes" not in got
    assert got["process_resident_memory_bytes"][0][1] > 1e6


def test_bad_node_exporter_style_flag_exits_2_with_one_line():
    result = helpers.run_cli("host-exporter", "--collector.diskstats.device-exclude=(", "--listen",
                             f"127.0.0.1:{helpers.free_port()}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--diskstats-device-exclude" in lines[0], result.stderr

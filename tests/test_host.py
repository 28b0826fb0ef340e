"""Host exporter: parsing and exclusions (unit), the real process over HTTP (component), bad settings (CLI)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

import helpers
from mlscope import host
from mlscope.host import cost, cpu, diskstats, filesystem, loadavg, meminfo, netdev, procfs

CONTRACT_FAMILIES = {
    # name: (type, label names) -- ARCHITECTURE.md's host section, node_exporter's names
    "node_cpu_seconds_total": ("counter", {"cpu", "mode"}),
    "node_load1": ("gauge", set()),
    "node_load5": ("gauge", set()),
    "node_load15": ("gauge", set()),
    "node_memory_MemTotal_bytes": ("gauge", set()),
    "node_memory_MemAvailable_bytes": ("gauge", set()),
    "node_memory_MemFree_bytes": ("gauge", set()),
    "node_memory_Buffers_bytes": ("gauge", set()),
    "node_memory_Cached_bytes": ("gauge", set()),
    "node_memory_SwapTotal_bytes": ("gauge", set()),
    "node_memory_SwapFree_bytes": ("gauge", set()),
    "node_filesystem_size_bytes": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_avail_bytes": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_free_bytes": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_filesystem_readonly": ("gauge", {"device", "fstype", "mountpoint"}),
    "node_disk_read_bytes_total": ("counter", {"device"}),
    "node_disk_written_bytes_total": ("counter", {"device"}),
    "node_disk_reads_completed_total": ("counter", {"device"}),
    "node_disk_writes_completed_total": ("counter", {"device"}),
    "node_disk_io_time_seconds_total": ("counter", {"device"}),
    "node_network_receive_bytes_total": ("counter", {"device"}),
    "node_network_transmit_bytes_total": ("counter", {"device"}),
    "node_network_receive_errs_total": ("counter", {"device"}),
    "node_network_transmit_errs_total": ("counter", {"device"}),
    "node_boot_time_seconds": ("gauge", set()),
    "node_time_seconds": ("gauge", set()),
    "node_uname_info": ("gauge", {"sysname", "release", "nodename", "machine", "domainname", "version"}),
}
NODE_MODES = {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}


def types_and_help(text: str) -> tuple[dict[str, str], set[str]]:
    types, helps = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
        elif line.startswith("# HELP "):
            parts = line.split(" ", 3)
            if len(parts) == 4 and parts[3].strip():
                helps.add(parts[2])
    return types, helps


# node_exporter's own names, kept verbatim for its dashboards, that promtool's lint rejects: camelCase kernel
# field names (node_memory_MemTotal_bytes, node_netstat_Tcp_InSegs, node_sockstat_TCP_inuse) and entropy in bits.
NODE_EXPORTER_LINT = r"node_(memory|netstat|sockstat)_\w+|node_entropy_\w+_bits"


def assert_promtool_clean(text: str) -> None:
    """`promtool check metrics` passes, with one known exception: its lint rejects some of node_exporter's own
    names, which the contract requires verbatim. Everything else must be clean, so the output without those
    families must give rc 0."""
    result = helpers.promtool_check_metrics(text)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    unexpected = [p for p in problems
                  if not re.match(rf"({NODE_EXPORTER_LINT}) (metric names should be written in 'snake_case' not "
                                  r"'camelCase'|use base unit \"bytes\" instead of \"bits\")$", p)]
    assert result.returncode in (0, 3) and not unexpected, (result.returncode, unexpected)
    rest = "\n".join(line for line in text.splitlines()
                     if not re.match(rf"(# (HELP|TYPE) )?({NODE_EXPORTER_LINT})[ {{]", line)) + "\n"
    result = helpers.promtool_check_metrics(rest)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- fake host trees

STAT = """cpu  300 20 100 5000 50 0 10 5 40 2
cpu0 150 10 50 2500 25 0 5 3 40 2
cpu1 150 10 50 2500 25 0 5 2 0 0
intr 123456 1 2 3 4 5 6 7 8 9
ctxt 987654
btime 1234567890
processes 4321
procs_running 3
procs_blocked 1
softirq 100 1 2 3
"""

MEMINFO = """MemTotal:       16384000 kB
MemFree:         1000000 kB
MemAvailable:    8000000 kB
Buffers:          200000 kB
Cached:          3000000 kB
SwapCached:            0 kB
Active(anon):     100000 kB
SReclaimable:     500000 kB
SwapTotal:       2097148 kB
SwapFree:        2097000 kB
HugePages_Total:       4
Hugepagesize:       2048 kB
"""

DISKSTATS = """   7       0 loop0 10 0 80 1 0 0 0 0 0 1 1 0 0 0 0 0 0
 259       0 nvme0n1 1000 10 20480 500 2000 20 40960 800 2 1500 1300 0 0 0 0 0 0
 259       1 nvme0n1p1 900 9 18000 450 1800 18 36000 700 0 1200 1000 0 0 0 0 0 0
   8       0 sda 5 0 40 3 6 0 48 4 0 7 7
   8       1 sda1 5 0 40 3 6 0 48 4 0 7 7
 253       0 dm-0 7 0 56 1 8 0 64 1 0 2 2 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
"""

NETDEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:12345678901234 200 3 4 0 0 0 5 98765 300 6 7 0 0 0 0
"""


def fake_procfs(tmp: Path, rootfs: Path | None = None) -> Path:
    """A procfs tree with the files the exporter reads; mounts name paths under `rootfs` as a container sees them."""
    proc = tmp / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "net").mkdir()
    (proc / "stat").write_text(STAT)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "loadavg").write_text("7.50 6.25 5.00 2/300 4321\n")
    (proc / "diskstats").write_text(DISKSTATS)
    (proc / "net" / "dev").write_text(NETDEV)
    root = str(rootfs) if rootfs else ""
    (proc / "1" / "mounts").write_text(
        f"/dev/nvme0n1p1 {root or '/'} ext4 rw,relatime 0 0\n"
        f"/dev/nvme1n1 {root}/data xfs ro,noatime 0 0\n"
        f"/dev/nvme1n1 {root}/data xfs ro,noatime 0 0\n"  # mounted twice: reported once
        f"proc {root}/proc proc rw 0 0\n"
        f"tmpfs {root}/run tmpfs rw 0 0\n"
        f"overlay {root}/var/lib/docker/overlay2/abc/merged overlay rw 0 0\n"
        f"/dev/loop3 {root}/snap/core/1 squashfs ro 0 0\n"
        f"fs-123.efs:/ {root}/mnt/with\\040space nfs4 rw 0 0\n"
    )
    return proc


def collect(collector) -> dict[str, list[tuple[dict, float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return helpers.samples(generate_latest(registry).decode())


# ---------------------------------------------------------------- unit: parsing

def test_cpu_seconds_use_node_exporter_modes_and_user_hz(tmp_path):
    collector = cpu.CPUCollector(procfs.Paths(procfs=str(fake_procfs(tmp_path))))
    got = collect(collector)
    cpu0 = {lbl["mode"]: v for lbl, v in got["node_cpu_seconds_total"] if lbl["cpu"] == "0"}
    # /proc/stat counts USER_HZ ticks; user keeps the guest time the kernel folds into it, like node_exporter.
    assert cpu0 == {"user": 1.5, "nice": 0.1, "system": 0.5, "idle": 25.0, "iowait": 0.25, "irq": 0.0,
                    "softirq": 0.05, "steal": 0.03}
    assert {lbl["cpu"] for lbl, _ in got["node_cpu_seconds_total"]} == {"0", "1"}  # no aggregate "cpu" line
    assert helpers.value(got, "node_cpu_guest_seconds_total", cpu="0", mode="user") == 0.4
    assert "node_boot_time_seconds" not in got  # node_exporter's stat collector, not cpu
    got = collect(cpu.StatCollector(procfs.Paths(procfs=str(tmp_path / "proc"))))
    assert helpers.value(got, "node_boot_time_seconds") == 1234567890
    assert helpers.value(got, "node_context_switches_total") == 987654
    assert helpers.value(got, "node_intr_total") == 123456
    assert helpers.value(got, "node_forks_total") == 4321
    assert helpers.value(got, "node_procs_blocked") == 1


def test_cpu_counters_never_go_backwards_unless_a_cpu_was_replugged(tmp_path):
    proc = fake_procfs(tmp_path)
    collector = cpu.CPUCollector(procfs.Paths(procfs=str(proc)))
    collect(collector)
    (proc / "stat").write_text(STAT.replace("cpu0 150 10 50 2500 25", "cpu0 160 10 50 2510 20"))  # iowait dips
    got = collect(collector)
    assert helpers.value(got, "node_cpu_seconds_total", cpu="0", mode="iowait") == 0.25
    assert helpers.value(got, "node_cpu_seconds_total", cpu="0", mode="user") == 1.6
    (proc / "stat").write_text(STAT.replace("cpu0 150 10 50 2500 25", "cpu0 1 0 0 100 0"))  # idle -24 s: hot-plug
    got = collect(collector)
    assert helpers.value(got, "node_cpu_seconds_total", cpu="0", mode="idle") == 1.0
    assert helpers.value(got, "node_cpu_seconds_total", cpu="0", mode="iowait") == 0.0


def test_meminfo_is_read_verbatim_with_node_exporter_names(tmp_path):
    got = collect(meminfo.MeminfoCollector(procfs.Paths(procfs=str(fake_procfs(tmp_path)))))
    assert helpers.value(got, "node_memory_MemTotal_bytes") == 16384000 * 1024
    # psutil's "cached" adds SReclaimable; node_exporter's Cached is the /proc/meminfo line alone.
    assert helpers.value(got, "node_memory_Cached_bytes") == 3000000 * 1024
    assert helpers.value(got, "node_memory_SwapFree_bytes") == 2097000 * 1024
    assert helpers.value(got, "node_memory_Active_anon_bytes") == 100000 * 1024
    assert helpers.value(got, "node_memory_HugePages_Total") == 4  # a count, no unit, no _bytes


def test_loadavg(tmp_path):
    got = collect(loadavg.LoadavgCollector(procfs.Paths(procfs=str(fake_procfs(tmp_path)))))
    assert [helpers.value(got, f"node_load{m}") for m in (1, 5, 15)] == [7.5, 6.25, 5.0]


def test_filesystem_exclusions_dedup_and_rootfs_prefix(tmp_path):
    rootfs = tmp_path / "host"
    for sub in ("data", "run", "mnt/with space"):
        (rootfs / sub).mkdir(parents=True)
    paths = procfs.Paths(procfs=str(fake_procfs(tmp_path, rootfs)), rootfs=str(rootfs))
    collector = filesystem.FilesystemCollector(paths, re.compile(filesystem.DEFAULT_MOUNT_POINTS_EXCLUDE),
                                         re.compile(filesystem.DEFAULT_FS_TYPES_EXCLUDE))
    got = collect(collector)
    sizes = {(lbl["device"], lbl["fstype"], lbl["mountpoint"]): v for lbl, v in got["node_filesystem_size_bytes"]}
    # /proc (path and type), overlay and squashfs are excluded; /run stays (node_exporter 1.5 upstream default);
    # mount points lose the rootfs prefix; \040 becomes a space; the double mount is reported once.
    assert set(sizes) == {("/dev/nvme0n1p1", "ext4", "/"), ("/dev/nvme1n1", "xfs", "/data"),
                          ("tmpfs", "tmpfs", "/run"), ("fs-123.efs:/", "nfs4", "/mnt/with space")}
    st = os.statvfs(rootfs / "data")
    assert sizes[("/dev/nvme1n1", "xfs", "/data")] == st.f_blocks * st.f_bsize
    assert helpers.value(got, "node_filesystem_avail_bytes", mountpoint="/data") <= \
        helpers.value(got, "node_filesystem_free_bytes", mountpoint="/data")
    assert helpers.value(got, "node_filesystem_readonly", mountpoint="/data") == 1
    assert helpers.value(got, "node_filesystem_readonly", mountpoint="/") == 0
    assert helpers.value(got, "node_filesystem_device_error", mountpoint="/run") == 0


def test_filesystem_a_failing_statfs_is_a_device_error_not_a_failed_scrape(tmp_path):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "mounts").write_text("/dev/sdz1 /definitely/not/here ext4 rw 0 0\n"
                                                    "/dev/vda / ext4 rw 0 0\n")
    collector = filesystem.FilesystemCollector(procfs.Paths(procfs=str(tmp_path / "proc")), None, None)
    got = collect(collector)
    assert helpers.value(got, "node_filesystem_device_error", mountpoint="/definitely/not/here") == 1
    assert [lbl["mountpoint"] for lbl, _ in got["node_filesystem_size_bytes"]] == ["/"]


def test_filesystem_a_hung_mount_is_skipped_until_it_returns(tmp_path, monkeypatch):
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "mounts").write_text("nfs:/export /hung nfs4 rw 0 0\n/dev/vda / ext4 rw 0 0\n")
    release, entered = threading.Event(), threading.Event()
    real_statvfs = os.statvfs

    def statvfs(path):
        if path == "/hung":
            entered.set()
            release.wait(20)  # an NFS server that went away
            return real_statvfs("/")
        return real_statvfs(path)

    monkeypatch.setattr(filesystem.os, "statvfs", statvfs)
    collector = filesystem.FilesystemCollector(procfs.Paths(procfs=str(tmp_path / "proc")), None, None, mount_timeout=0.3)
    try:
        got = collect(collector)
        assert entered.is_set()
        assert helpers.value(got, "node_filesystem_device_error", mountpoint="/hung") == 1
        # The stuck thread must not keep the exporter from exiting on SIGTERM.
        assert all(t.daemon for t in threading.enumerate() if t.name == "statvfs")
        # The scrape goes on to the other mount points instead of hanging with the first.
        assert {lbl["mountpoint"] for lbl, _ in got["node_filesystem_size_bytes"]} == {"/"}
        # Next scrape: the hung mount is not touched again, the others are still reported.
        entered.clear()
        got = collect(collector)
        assert not entered.is_set()
        assert helpers.value(got, "node_filesystem_device_error", mountpoint="/hung") == 1
        assert helpers.value(got, "node_filesystem_device_error", mountpoint="/") == 0
    finally:
        release.set()
    for _ in range(1000):  # the hung statvfs returns: wait (at most 10 s) for its worker to notice
        if "/hung" not in collector._stuck:
            break
        time.sleep(0.01)
    got = collect(collector)
    assert helpers.value(got, "node_filesystem_device_error", mountpoint="/hung") == 0
    assert {lbl["mountpoint"] for lbl, _ in got["node_filesystem_size_bytes"]} == {"/", "/hung"}


@pytest.mark.parametrize("device, kept", [
    ("sda", True), ("sda1", False), ("vda", True), ("xvda", True), ("xvda1", False), ("hdb2", False),
    ("nvme0n1", True), ("nvme0n1p1", False), ("nvme12n1p3", False), ("dm-0", True), ("md127", True),
    ("loop0", False), ("ram0", False), ("fd0", False), ("sr0", True), ("zram0", True),
])
def test_disk_device_exclusion_is_node_exporters_default(device, kept):
    assert procfs.DeviceFilter(re.compile(diskstats.DEFAULT_DISK_DEVICE_EXCLUDE))(device) is kept


def test_diskstats_bytes_and_seconds(tmp_path):
    paths = procfs.Paths(procfs=str(fake_procfs(tmp_path)))
    got = collect(diskstats.DiskstatsCollector(paths, re.compile(diskstats.DEFAULT_DISK_DEVICE_EXCLUDE)))
    assert {lbl["device"] for lbl, _ in got["node_disk_read_bytes_total"]} == {"nvme0n1", "sda", "dm-0"}
    assert helpers.value(got, "node_disk_reads_completed_total", device="nvme0n1") == 1000
    assert helpers.value(got, "node_disk_read_bytes_total", device="nvme0n1") == 20480 * 512
    assert helpers.value(got, "node_disk_writes_completed_total", device="nvme0n1") == 2000
    assert helpers.value(got, "node_disk_written_bytes_total", device="nvme0n1") == 40960 * 512
    assert helpers.value(got, "node_disk_io_time_seconds_total", device="nvme0n1") == 1.5
    assert helpers.value(got, "node_disk_io_time_weighted_seconds_total", device="sda") == 0.007  # 11-field kernel


def test_netdev_counters_and_exclusion(tmp_path):
    paths = procfs.Paths(procfs=str(fake_procfs(tmp_path)))
    got = collect(netdev.NetdevCollector(paths, None))
    assert helpers.value(got, "node_network_receive_bytes_total", device="eth0") == 12345678901234
    assert helpers.value(got, "node_network_receive_errs_total", device="eth0") == 3
    assert helpers.value(got, "node_network_receive_multicast_total", device="eth0") == 5
    assert helpers.value(got, "node_network_transmit_bytes_total", device="eth0") == 98765
    assert helpers.value(got, "node_network_transmit_errs_total", device="eth0") == 6
    assert helpers.value(got, "node_network_receive_bytes_total", device="lo") == 1000
    got = collect(netdev.NetdevCollector(paths, re.compile("^lo$")))
    assert {lbl["device"] for lbl, _ in got["node_network_receive_bytes_total"]} == {"eth0"}


# ---------------------------------------------------------------- unit: cost

def test_price_table_covers_the_ml_families_with_source_and_date():
    text = Path(cost.PRICE_TABLE).read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "aws.amazon.com/ec2/pricing" in header and re.search(r"20\d\d", header)
    prices = cost.load_price_table()
    assert all(p > 0 for p in prices.values())
    families = {t.split(".")[0] for _, t in prices}
    for family in ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p5", "m5", "m6i", "m7i", "c5", "c6i", "c7i", "r5", "t3",
                   "inf1", "inf2", "trn1"):
        assert family in families
        for region in ("us-east-1", "us-west-2"):
            assert any(r == region and t.startswith(family + ".") for r, t in prices), (family, region)
    assert {r for r, _ in prices} == {"us-east-1", "us-west-2", "eu-west-1"}
    use1 = {t: p for (r, t), p in prices.items() if r == "us-east-1"}
    assert use1["g5.xlarge"] < use1["g5.2xlarge"] < use1["p4d.24xlarge"] < use1["p5.48xlarge"]


def test_cost_from_instance_type_and_region():
    prices = cost.load_price_table()
    for itype, region in (("g5.xlarge", "us-east-1"), ("m5.large", "eu-west-1"), ("G5.XLARGE", "us-east-1")):
        assert cost.resolve_hourly_cost(None, itype, region, prices) == (itype, prices[(region, itype.lower())])
    assert prices[("eu-west-1", "m5.large")] != prices[("us-east-1", "m5.large")]


def test_configured_hourly_cost_wins_over_the_table():
    assert cost.resolve_hourly_cost(2.5, "g5.xlarge", "us-east-1", None) == ("g5.xlarge", 2.5)
    assert cost.resolve_hourly_cost(0.75, None, "us-east-1", None) == ("", 0.75)


def test_no_cost_when_nothing_is_known(caplog):
    with caplog.at_level(logging.INFO, logger="mlscope.host"):
        assert cost.resolve_hourly_cost(None, None, "us-east-1", None) is None
    assert not caplog.records


@pytest.mark.parametrize("itype, region, expected", [
    ("x9.mega", "us-east-1", "unknown instance_type x9.mega"),
    ("p5.48xlarge", "eu-west-1", "no price for instance_type p5.48xlarge in region eu-west-1"),
    ("ml.g5.xlarge", "us-east-1", "SageMaker type"),
])
def test_unknown_instance_type_gives_one_clear_log_line(caplog, itype, region, expected):
    with caplog.at_level(logging.INFO, logger="mlscope.host"):
        assert cost.resolve_hourly_cost(None, itype, region, None) is None
    assert len(caplog.records) == 1 and expected in caplog.records[0].getMessage()
    assert "hourly_cost_dollars" in caplog.records[0].getMessage()


def test_instance_type_detected_from_dmi_on_ec2(tmp_path):
    dmi = tmp_path / "sys" / "devices" / "virtual" / "dmi" / "id"
    dmi.mkdir(parents=True)
    (dmi / "sys_vendor").write_text("Amazon EC2\n")
    (dmi / "product_name").write_text("g6e.12xlarge\n")
    assert cost.detect_ec2_instance_type(procfs.Paths(sysfs=str(tmp_path / "sys"))) == "g6e.12xlarge"
    (dmi / "sys_vendor").write_text("QEMU\n")
    assert cost.detect_ec2_instance_type(procfs.Paths(sysfs=str(tmp_path / "sys"))) is None
    assert cost.detect_ec2_instance_type(procfs.Paths(sysfs=str(tmp_path / "nothing"))) is None


# ---------------------------------------------------------------- component: the real process over HTTP

@pytest.fixture(scope="module")
def live():
    proc, base = helpers.start_exporter("host-exporter")
    yield base
    proc.stop()


def test_serves_every_contract_family_with_node_exporter_labels_and_types(live):
    text = helpers.scrape(live)
    parsed = helpers.samples(text)
    types, helps = types_and_help(text)
    for name, (typ, labels) in CONTRACT_FAMILIES.items():
        assert parsed.get(name), f"{name} missing"
        assert types.get(name) == typ, (name, types.get(name))
        assert name in helps, f"{name} has no HELP"
        for lbls, _ in parsed[name]:
            assert set(lbls) == labels, (name, lbls)
    online = {m.group(1) for m in re.finditer(r"^cpu(\d+) ", Path("/proc/stat").read_text(), flags=re.M)}
    assert {lbl["cpu"] for lbl, _ in parsed["node_cpu_seconds_total"]} == online
    assert {lbl["mode"] for lbl, _ in parsed["node_cpu_seconds_total"]} == NODE_MODES
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
    assert helpers.value(parsed, "node_memory_MemTotal_bytes") == meminfo["MemTotal"] * 1024
    assert all(not lbl["device"].startswith("/dev/") for lbl, _ in parsed["node_disk_read_bytes_total"])
    assert helpers.value(parsed, "node_uname_info", sysname=os.uname().sysname, nodename=os.uname().nodename) == 1
    assert "mlscope_host_hourly_cost_dollars" not in parsed  # no cost configured, not on EC2
    assert {lbl["collector"]: v for lbl, v in parsed["mlscope_collector_up"]} == {c: 1.0 for c in host.COLLECTORS}
    # node_exporter's view: 0 also for a collector with nothing to read here (no RAID, no hwmon); the
    # integration test checks each against the real node_exporter
    assert {lbl["collector"] for lbl, _ in parsed["node_scrape_collector_success"]} == set(host.COLLECTORS)


@pytest.mark.integration
def test_output_passes_promtool(live):
    assert_promtool_clean(helpers.scrape(live))


def test_openmetrics_when_asked(live):
    resp = requests.get(live + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"},
                                timeout=10)
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert "node_cpu_seconds_total{" in resp.text and resp.text.rstrip().endswith("# EOF")


@pytest.mark.integration
def test_procfs_sysfs_rootfs_are_honoured(tmp_path):
    rootfs = tmp_path / "host"
    for sub in ("data", "run", "mnt/with space"):
        (rootfs / sub).mkdir(parents=True)
    proc = fake_procfs(tmp_path, rootfs)
    # Start from the real files, with numbers no real host has, so the values can only come from --procfs.
    real_stat = Path("/proc/stat").read_text()
    (proc / "stat").write_text(re.sub(r"^cpu0 .*$", "cpu0 4242 0 1717 999900 0 0 0 0 0 0", real_stat, flags=re.M))
    real_meminfo = Path("/proc/meminfo").read_text()
    (proc / "meminfo").write_text(re.sub(r"^MemTotal: .*$", "MemTotal:       123456789 kB", real_meminfo, flags=re.M))
    config = tmp_path / "host.yml"
    config.write_text(f"sysfs: {tmp_path}\nhourly_cost_dollars: 3.5\ninstance_type: g5.2xlarge\n")
    proc_, base = helpers.start_exporter("host-exporter", "--rootfs", str(rootfs), "--config", str(config),
                                         env={"MLSCOPE_PROCFS": str(proc)})
    try:
        text = helpers.scrape(base)
    finally:
        proc_.stop()
    parsed = helpers.samples(text)
    assert helpers.value(parsed, "node_memory_MemTotal_bytes") == 123456789 * 1024
    assert helpers.value(parsed, "node_cpu_seconds_total", cpu="0", mode="user") == 42.42
    assert helpers.value(parsed, "node_cpu_seconds_total", cpu="0", mode="system") == 17.17
    assert helpers.value(parsed, "node_load1") == 7.5
    assert helpers.value(parsed, "node_network_receive_bytes_total", device="eth0") == 12345678901234
    assert {lbl["device"] for lbl, _ in parsed["node_disk_reads_completed_total"]} == {"nvme0n1", "sda", "dm-0"}
    mountpoints = {lbl["mountpoint"] for lbl, _ in parsed["node_filesystem_size_bytes"]}
    assert mountpoints == {"/", "/data", "/run", "/mnt/with space"}
    assert helpers.value(parsed, "mlscope_host_hourly_cost_dollars", instance_type="g5.2xlarge") == 3.5
    assert_promtool_clean(text)


def test_price_table_lookup_in_the_running_exporter(tmp_path):
    proc, base = helpers.start_exporter("host-exporter", "--instance-type", "p4d.24xlarge",
                                        env={"MLSCOPE_REGION": "us-west-2"})
    try:
        parsed = helpers.samples(helpers.scrape(base))
    finally:
        proc.stop()
    expected = cost.load_price_table()[("us-west-2", "p4d.24xlarge")]
    assert helpers.value(parsed, "mlscope_host_hourly_cost_dollars", instance_type="p4d.24xlarge") == expected


def test_unknown_instance_type_logs_once_and_exports_no_cost():
    proc, base = helpers.start_exporter("host-exporter", "--instance-type", "x9.mega")
    try:
        parsed = helpers.samples(helpers.scrape(base))
        helpers.scrape(base)
    finally:
        output = proc.stop()
    assert "mlscope_host_hourly_cost_dollars" not in parsed
    assert "cost" not in {lbl["collector"] for lbl, _ in parsed["mlscope_collector_up"]}
    lines = [line for line in output.splitlines() if "x9.mega" in line]
    assert len(lines) == 1 and "level=warning" in lines[0] and "hourly_cost_dollars" in lines[0], output


# ---------------------------------------------------------------- CLI: bad settings

@pytest.mark.parametrize("args, env, names", [
    (["--rootfs", "/nonexistent"], {}, "--rootfs"),
    (["--hourly-cost-dollars", "abc"], {}, "--hourly-cost-dollars"),
    (["--hourly-cost-dollars", "-1"], {}, "--hourly-cost-dollars"),
    ([], {"MLSCOPE_PROCFS": "/nonexistent"}, "MLSCOPE_PROCFS"),
    (["--sysfs", "/etc/hostname"], {}, "--sysfs"),
    (["--diskstats-device-exclude", "(unclosed"], {}, "--diskstats-device-exclude"),
    (["--filesystem-mount-timeout", "soon"], {}, "--filesystem-mount-timeout"),
])
def test_bad_setting_exits_2_with_one_line_naming_it(args, env, names):
    result = helpers.run_cli("host-exporter", "--listen", f"127.0.0.1:{helpers.free_port()}", *args, env=env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_procfs_without_a_stat_file_is_refused(tmp_path):
    result = helpers.run_cli("host-exporter", "--listen", f"127.0.0.1:{helpers.free_port()}", "--procfs", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--procfs" in lines[0] and "stat" in lines[0], result.stderr


def test_help_lists_the_settings_with_env_names():
    result = helpers.run_cli("host-exporter", "--help")
    assert result.returncode == 0
    for flag, env in (("--rootfs", "MLSCOPE_ROOTFS"), ("--procfs", "MLSCOPE_PROCFS"), ("--sysfs", "MLSCOPE_SYSFS"),
                      ("--hourly-cost-dollars", "MLSCOPE_HOURLY_COST_DOLLARS"),
                      ("--instance-type", "MLSCOPE_INSTANCE_TYPE"), ("--region", "MLSCOPE_REGION")):
        assert flag in result.stdout and env in result.stdout


def test_module_does_not_import_heavy_modules():
    code = ("import sys, mlscope.host; heavy = [m for m in ('psutil', 'boto3', 'botocore', 'pynvml', 'requests', "
            "'numpy') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    cwd=helpers.ROOT, timeout=30)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr

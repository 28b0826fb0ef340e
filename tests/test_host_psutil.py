"""`--backend psutil` (the default off Linux), checked on Linux against the /proc backend: the same names,
labels and units, values within what changes between two scrapes."""

from __future__ import annotations

import sys

import pytest

import helpers
from mlscope import host

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with the Linux /proc backend")

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def both():
    proc_backend, proc_url = helpers.start_exporter("host-exporter", "--backend", "proc")
    try:
        psutil_backend, psutil_url = helpers.start_exporter("host-exporter", "--backend", "psutil")
    except BaseException:
        proc_backend.stop()
        raise
    try:
        before = helpers.samples(helpers.scrape(proc_url))
        mine = helpers.samples(helpers.scrape(psutil_url))
        after = helpers.samples(helpers.scrape(proc_url))
    finally:
        psutil_backend.stop()
        proc_backend.stop()
    yield before, mine, after


def by_labels(parsed: dict, name: str) -> dict[tuple, float]:
    return {tuple(sorted(lbls.items())): v for lbls, v in parsed.get(name, [])}


def bracketed(before, mine, after, name, slack=0.0):
    b, m, a = by_labels(before, name), by_labels(mine, name), by_labels(after, name)
    assert m and set(m) == set(b), (name, sorted(set(m) ^ set(b)))
    for key, value in m.items():
        assert b[key] - slack <= value <= a[key] + slack, (name, dict(key), b[key], value, a[key])


def test_every_psutil_series_has_the_proc_backends_name_and_labels(both):
    before, mine, _ = both
    node_names = {n for n in mine if n.startswith("node_")}
    assert node_names - set(before) == set()
    assert {"node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes",
            "node_disk_read_bytes_total", "node_network_receive_bytes_total", "node_load1",
            "node_boot_time_seconds"} <= node_names
    for name in node_names:
        label_sets = {tuple(sorted(lbls)) for lbls, _ in mine[name]}
        assert label_sets <= {tuple(sorted(lbls)) for lbls, _ in before[name]}, name
    assert set(by_labels(mine, "mlscope_collector_up").values()) == {1.0}
    assert {dict(k)["collector"] for k in by_labels(mine, "node_scrape_collector_success")} == set(
        host.PSUTIL_COLLECTORS + host.PORTABLE_COLLECTORS)


def test_counters_agree_with_proc(both):
    before, mine, after = both
    bracketed(before, mine, after, "node_cpu_seconds_total", slack=0.05)
    for name in ("node_disk_reads_completed_total", "node_disk_written_bytes_total", "node_disk_io_time_seconds_total",
                 "node_network_receive_bytes_total", "node_network_transmit_packets_total",
                 "node_context_switches_total"):
        bracketed(before, mine, after, name)
    assert abs(helpers.value(mine, "node_boot_time_seconds") - helpers.value(before, "node_boot_time_seconds")) <= 1


def test_memory_and_filesystems_agree_with_proc(both):
    before, mine, _ = both
    assert helpers.value(mine, "node_memory_MemTotal_bytes") == helpers.value(before, "node_memory_MemTotal_bytes")
    for field in ("MemAvailable", "MemFree", "Buffers"):
        name = f"node_memory_{field}_bytes"
        assert abs(helpers.value(mine, name) - helpers.value(before, name)) <= 64 * MIB, name
    # psutil's cached adds SReclaimable (documented in docs/host-exporter.md)
    proc_cached = helpers.value(before, "node_memory_Cached_bytes") + helpers.value(before,
                                                                                   "node_memory_SReclaimable_bytes")
    assert abs(helpers.value(mine, "node_memory_Cached_bytes") - proc_cached) <= 64 * MIB
    assert by_labels(mine, "node_filesystem_size_bytes") == by_labels(before, "node_filesystem_size_bytes")
    assert by_labels(mine, "node_filesystem_files") == by_labels(before, "node_filesystem_files")
    assert by_labels(mine, "node_filesystem_readonly") == by_labels(before, "node_filesystem_readonly")


def test_a_proc_only_collector_asked_for_with_psutil_exits_2():
    result = helpers.run_cli("host-exporter", "--backend", "psutil", "--collector.vmstat",
                             "--listen", f"127.0.0.1:{helpers.free_port()}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--collector.vmstat" in lines[0], result.stderr

"""mlscope-hosts: CPU, memory, disk, network and load of every host.

Variable `instance` (multi-select, All = .*). The metric names are node_exporter's, so this
dashboard works on MLScope's host exporter and on node_exporter alike.
"""

from __future__ import annotations

from .panels import (Q, Section, build_dashboard, high_bad, neutral, query_variable, stat_panel, steps,
                     table_panel, timeseries_panel, GREEN, ORANGE)

UID = "mlscope-hosts"
TITLE = "MLScope / Hosts"

I = 'instance=~"$instance"'
USAGE = high_bad(0.8, 0.9)
CORES = f'count by (instance) (node_cpu_seconds_total{{{I},mode="idle"}})'
NOT_LO = 'device!="lo"'


def _per_op(seconds: str, completed: str) -> str:
    """Mean seconds per completed disk operation over the rate interval; no value for an idle disk."""
    return (f"rate(node_disk_{seconds}_total{{{I}}}[$__rate_interval]) "
            f"/ (rate(node_disk_{completed}_total{{{I}}}[$__rate_interval]) > 0)")


def build():
    variables = [query_variable("instance", "Host", "label_values(node_uname_info, instance)")]
    summary = Section(None, [
        stat_panel("CPU busy", [Q(f"instance:node_cpu_utilization:ratio_rate5m{{{I}}}", "{{instance}}")],
                   "percentunit", USAGE, decimals=0, names=True),
        stat_panel("Memory used", [Q(f"instance:node_memory_utilization:ratio{{{I}}}", "{{instance}}")],
                   "percentunit", USAGE, decimals=0, names=True, description="1 − MemAvailable / MemTotal."),
        stat_panel("Fullest filesystem", [Q(f"instance:node_filesystem_utilization:max_ratio{{{I}}}", "{{instance}}")],
                   "percentunit", high_bad(0.85, 0.95), decimals=0, names=True),
        stat_panel("Load per core (1m)", [Q(f"node_load1{{{I}}} / on (instance) {CORES}", "{{instance}}")],
                   "none", high_bad(1, 2), decimals=2, names=True,
                   description="1-minute load average divided by the number of CPUs."),
        stat_panel("Uptime", [Q(f"node_time_seconds{{{I}}} - node_boot_time_seconds{{{I}}}", "{{instance}}")],
                   "s", steps(ORANGE, (600, GREEN)), graph=False, names=True),
        stat_panel("Host $/hour", [Q(f"mlscope_host_hourly_cost_dollars{{{I}}}", "{{instance}} ({{instance_type}})")],
                   "currencyUSD", neutral(), decimals=2, names=True, graph=False,
                   description="From config or the instance type's price; absent when unknown."),
    ])
    cpu = Section("CPU and load", [
        timeseries_panel("CPU by mode", [
            Q(f'sum by (instance, mode) (rate(node_cpu_seconds_total{{{I},mode!="idle"}}[$__rate_interval])) '
              f"/ on (instance) group_left {CORES}", "{{instance}} {{mode}}"),
        ], "percentunit", USAGE, stack=True, min_val=0, soft_max=1,
            description="Share of all CPUs per mode (idle left out). The axis grows past 100 % rather than clip "
                        "when counters from different scrapes add up to a little more."),
        timeseries_panel("Load average", [
            Q(f"node_load1{{{I}}}", "{{instance}} 1m"),
            Q(f"node_load5{{{I}}}", "{{instance}} 5m"),
            Q(f"node_load15{{{I}}}", "{{instance}} 15m"),
            Q(CORES, "{{instance}} CPUs"),
        ], "none", neutral(), min_val=0, fill=0),
    ])
    memory = Section("Memory", [
        timeseries_panel("Memory", [
            Q(f"node_memory_MemTotal_bytes{{{I}}} - node_memory_MemAvailable_bytes{{{I}}}", "{{instance}} used"),
            Q(f"node_memory_Buffers_bytes{{{I}}} + node_memory_Cached_bytes{{{I}}}", "{{instance}} buffers+cache"),
            Q(f"node_memory_MemFree_bytes{{{I}}}", "{{instance}} free"),
            Q(f"node_memory_MemTotal_bytes{{{I}}}", "{{instance}} total"),
        ], "bytes", neutral(), min_val=0, fill=0),
        timeseries_panel("Memory and swap used", [
            Q(f"instance:node_memory_utilization:ratio{{{I}}}", "{{instance}} memory"),
            Q(f"1 - node_memory_SwapFree_bytes{{{I}}} / (node_memory_SwapTotal_bytes{{{I}}} > 0)", "{{instance}} swap"),
        ], "percentunit", USAGE, min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="Swap is shown only on hosts that have swap."),
    ])
    disk = Section("Disk", [
        timeseries_panel("Filesystem used", [
            Q(f"1 - node_filesystem_avail_bytes{{{I}}} / node_filesystem_size_bytes{{{I}}}",
              "{{instance}} {{mountpoint}}"),
        ], "percentunit", high_bad(0.85, 0.95), w=8, min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="Space not available to unprivileged users, per mount point."),
        timeseries_panel("Disk throughput", [
            Q(f"rate(node_disk_read_bytes_total{{{I}}}[$__rate_interval])", "{{instance}} {{device}} read"),
            Q(f"rate(node_disk_written_bytes_total{{{I}}}[$__rate_interval])", "{{instance}} {{device}} write"),
        ], "Bps", neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Disk IOPS", [
            Q(f"rate(node_disk_reads_completed_total{{{I}}}[$__rate_interval])", "{{instance}} {{device}} reads"),
            Q(f"rate(node_disk_writes_completed_total{{{I}}}[$__rate_interval])", "{{instance}} {{device}} writes"),
        ], "iops", neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Disk busy", [
            Q(f"rate(node_disk_io_time_seconds_total{{{I}}}[$__rate_interval])", "{{instance}} {{device}}"),
        ], "percentunit", USAGE, w=8, min_val=0, max_val=1, fill=0,
            description="Share of time the device had I/O in flight."),
        timeseries_panel("Disk latency", [
            Q(_per_op("read_time_seconds", "reads_completed"), "{{instance}} {{device}} read"),
            Q(_per_op("write_time_seconds", "writes_completed"), "{{instance}} {{device}} write"),
        ], "s", high_bad(0.02, 0.1), w=8, min_val=0, fill=0, show_thresholds=True,
            description="Mean time per completed read and write (time spent ÷ operations). SSDs: about a "
                        "millisecond; tens of milliseconds mean a saturated or failing disk."),
        timeseries_panel("Inodes used", [
            Q(f"1 - node_filesystem_files_free{{{I}}} / (node_filesystem_files{{{I}}} > 0)",
              "{{instance}} {{mountpoint}}"),
        ], "percentunit", high_bad(0.85, 0.95), w=8, min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="A filesystem out of inodes refuses new files with space left (many small files: "
                        "model caches, checkpoints). Filesystems without an inode limit are left out."),
    ])
    network = Section("Network", [
        timeseries_panel("Network traffic (all interfaces but lo)", [
            Q(f"instance:node_network_receive_bytes:rate5m{{{I}}}", "{{instance}} rx"),
            Q(f"instance:node_network_transmit_bytes:rate5m{{{I}}}", "{{instance}} tx"),
        ], "Bps", neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Network traffic by interface", [
            Q(f"rate(node_network_receive_bytes_total{{{I},{NOT_LO}}}[$__rate_interval])", "{{instance}} {{device}} rx"),
            Q(f"rate(node_network_transmit_bytes_total{{{I},{NOT_LO}}}[$__rate_interval])",
              "{{instance}} {{device}} tx"),
        ], "Bps", neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Network errors", [
            Q(f"rate(node_network_receive_errs_total{{{I},{NOT_LO}}}[$__rate_interval])", "{{instance}} {{device}} rx"),
            Q(f"rate(node_network_transmit_errs_total{{{I},{NOT_LO}}}[$__rate_interval])",
              "{{instance}} {{device}} tx"),
        ], "cps", steps(GREEN, (1, ORANGE)), w=8, min_val=0, fill=0),
        table_panel("Hosts", [f"node_uname_info{{{I}}}"], "none", neutral(), h=6,
                    hide=("Time", "Value", "__name__", "job"), description="Kernel and machine of every host."),
    ])
    return build_dashboard(UID, TITLE, "Hosts: CPU, memory, disk, network and load (node_exporter metric names).",
                           [summary, cpu, memory, disk, network], extra_tags=["hosts"], variables=variables,
                           alert_matchers=I)


__all__ = ["UID", "TITLE", "build"]

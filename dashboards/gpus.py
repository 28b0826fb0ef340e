"""mlscope-gpus: NVIDIA GPUs from the MLScope GPU exporter (NVML).

Variables `instance` and `gpu` (multi-select, All = .*). The top row is fleet-wide (recording
rules, not filtered); everything below follows the variables and reads the raw per-GPU series.
GPM fields (SM activity/occupancy, tensor, DRAM) exist on Hopper and newer only.
"""

from __future__ import annotations

from .panels import (Q, Section, any_bad, build_dashboard, high_bad, neutral, query_variable, stat_panel, steps,
                     state_panel, table_panel, timeseries_panel, value_text, BLUE, GREEN, ORANGE, RED)

UID = "mlscope-gpus"
TITLE = "MLScope / GPUs"

G = 'instance=~"$instance",gpu=~"$gpu"'
LEGEND = "{{instance}} GPU {{gpu}}"
BUSY = steps(ORANGE, (0.1, GREEN))   # under 10 % busy counts as idle (fleet:gpus_idle:count)
TEMPERATURE = high_bad(80, 90)
JOULES_PER_KWH = 3_600_000

# Xid events in the range: the sum, minute by minute, of what each Xid counter gained since the value
# before it. Before it means the last sample in the hour before, so a scrape gap does not count an
# old Xid again; no sample before (a GPU's first Xid: the series appears already at 1, which increase()
# cannot see) or a drop (an exporter restart) counts the whole value as new. Exact, no extrapolation.
# (`* 1` drops the metric name, so both sides of `or` make the same series across the subquery.)
XID = "gpu_xid_errors_total{%s}" % G
XID_NEW = f"(({XID} - last_over_time({XID}[1h] offset 1m)) >= 0) or {XID} * 1"
XID_EVENTS = f"sum(sum_over_time(({XID_NEW})[$__range:1m])) or vector(0)"

# NVML clock event reasons: the harmful ones (hardware and thermal slowdown, power brake) come from the
# rules' one config place (alerts/config.rules.yml), so the dashboard and GPUClockThrottled agree. The
# others (idle, application clocks, the power cap every busy GPU touches, ...) are normal operation.
THROTTLE_STATES = {"0": ("off", "transparent"), "1": ("active (normal)", BLUE), "2": ("throttled", RED)}
THROTTLE = (f"max by (instance, gpu, reason) (gpu_clock_throttle_active{{{G}}}"
            f" * on (reason) group_left () mlscope:config:gpu_throttle_reason_harmful) * 2"
            f" or max by (instance, gpu, reason) (gpu_clock_throttle_active{{{G}}})")


def build():
    variables = [
        query_variable("instance", "Host", "label_values(gpu_info, instance)"),
        query_variable("gpu", "GPU", 'label_values(gpu_info{instance=~"$instance"}, gpu)'),
    ]
    fleet = Section("Fleet (all GPUs)", [
        stat_panel("GPUs", ["fleet:gpus:count"], "none", neutral(), graph=False),
        stat_panel("Idle GPUs", ["fleet:gpus_idle:count or vector(0)"], "none", steps(GREEN, (1, ORANGE)),
                   description="GPUs under 10 % busy, averaged over 10 minutes."),
        stat_panel("Mean utilization", ["fleet:gpu_utilization:mean_ratio"], "percentunit", BUSY, decimals=0),
        stat_panel("Mean SM occupancy", ["fleet:gpu_sm_occupancy:mean_ratio"], "percentunit", neutral(), decimals=0,
                   description="Mean over GPUs that report GPM (Hopper and newer)."),
        stat_panel("Fleet memory used", ["fleet:gpu_memory_used:ratio"], "percentunit", high_bad(0.85, 0.95), decimals=0),
        stat_panel("Fleet power", ["fleet:gpu_power_watts:sum"], "watt", neutral()),
    ])
    health = Section("Health", [
        stat_panel("GPUs down", [f"count(gpu_up{{{G}}} == 0) or vector(0)"], "none", any_bad(), graph=False,
                   color_background=True, description="GPUs NVML can no longer talk to (e.g. fallen off the bus)."),
        stat_panel("Xid errors", [Q(XID_EVENTS, instant=True)], "none", any_bad(), graph=False, decimals=0,
                   description="NVML Xid events in the selected time range, the first Xid of a GPU included."),
        stat_panel("Uncorrected ECC errors",
                   [f'sum(increase(gpu_ecc_errors_total{{{G},type="uncorrected"}}[$__range])) or vector(0)'],
                   "none", any_bad(), graph=False, decimals=0, description="In the selected time range."),
        stat_panel("Corrected ECC errors",
                   [f'sum(increase(gpu_ecc_errors_total{{{G},type="corrected"}}[$__range])) or vector(0)'],
                   "none", steps(GREEN, (100, ORANGE)), graph=False, decimals=0,
                   description="In the selected time range."),
        stat_panel("Row remapping pending/failed",
                   [f'sum(gpu_remapped_rows{{{G},type=~"pending|failure"}}) or vector(0)'], "none", any_bad(),
                   graph=False, decimals=0, description="A pending remap needs a GPU reset; a failure, an RMA."),
        stat_panel("PCIe replays", [f"sum(increase(gpu_pcie_replay_errors_total{{{G}}}[$__range])) or vector(0)"],
                   "none", steps(GREEN, (100, ORANGE)), graph=False, decimals=0,
                   description="PCIe link replays in the selected time range."),
    ])
    compute = Section("Compute", [
        timeseries_panel("Utilization", [Q(f"gpu_utilization_ratio{{{G}}}", LEGEND)], "percentunit", BUSY,
                         min_val=0, max_val=1, fill=0,
                         description="Share of time a kernel was running (NVML utilization.gpu)."),
        timeseries_panel("Utilization, 10 m average", [
            Q(f"instance_gpu:gpu_utilization:avg_ratio_10m{{{G}}}", LEGEND)], "percentunit", BUSY,
            min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="Below the 10 % line a GPU counts as idle for cost."),
        timeseries_panel("SM activity, occupancy and tensor activity (GPM)", [
            Q(f"gpu_sm_active_ratio{{{G}}}", LEGEND + " SM active"),
            Q(f"gpu_sm_occupancy_ratio{{{G}}}", LEGEND + " SM occupancy"),
            Q(f"gpu_tensor_active_ratio{{{G}}}", LEGEND + " tensor"),
            Q(f"gpu_dram_active_ratio{{{G}}}", LEGEND + " DRAM"),
        ], "percentunit", neutral(), min_val=0, max_val=1, fill=0,
            description="Hopper+ GPM metrics: how much of the chip is really working, unlike utilization."),
        timeseries_panel("Clocks", [
            Q(f"gpu_sm_clock_hertz{{{G}}}", LEGEND + " SM"),
            Q(f"gpu_memory_clock_hertz{{{G}}}", LEGEND + " memory"),
            Q(f"gpu_sm_clock_max_hertz{{{G}}}", LEGEND + " SM max"),
        ], "hertz", neutral(), min_val=0, fill=0),
        state_panel("Clock throttle reasons", [Q(THROTTLE, LEGEND + " {{reason}}")], "none",
                    steps(GREEN, (1, BLUE), (2, RED)), w=24, h=8, mappings=[value_text(THROTTLE_STATES)],
                    description="NVML clock event reasons. Red: hardware slowdown, thermal slowdown or power brake, "
                                "which cost throughput (mlscope:config:gpu_throttle_reason_harmful). Blue: normal "
                                "operation (idle, application clocks, the software power cap, sync boost)."),
    ])
    memory = Section("Memory and PCIe", [
        timeseries_panel("Memory used", [
            Q(f"gpu_memory_used_bytes{{{G}}}", LEGEND + " used"),
            Q(f"gpu_memory_total_bytes{{{G}}}", LEGEND + " total"),
        ], "bytes", neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Memory used / total", [Q(f"instance_gpu:gpu_memory_used:ratio{{{G}}}", LEGEND)],
                         "percentunit", high_bad(0.85, 0.95), w=8, min_val=0, max_val=1, fill=0,
                         show_thresholds=True),
        timeseries_panel("Memory copy utilization", [Q(f"gpu_memory_copy_utilization_ratio{{{G}}}", LEGEND)],
                         "percentunit", neutral(), w=8, min_val=0, max_val=1, fill=0,
                         description="Share of time the memory controller was busy."),
        timeseries_panel("PCIe throughput", [
            Q(f"gpu_pcie_transmit_bytes_per_second{{{G}}}", LEGEND + " tx"),
            Q(f"gpu_pcie_receive_bytes_per_second{{{G}}}", LEGEND + " rx"),
        ], "Bps", neutral(), w=12, min_val=0, fill=0),
        table_panel("Per-process GPU memory", [f"gpu_process_memory_used_bytes{{{G}}}"], "bytes", neutral(),
                    w=12, h=8, hide=("Time", "__name__", "job", "uuid"), rename={"Value": "memory used"},
                    sort_by="memory used",
                    description="Processes holding GPU memory now, with their container when known."),
    ])
    thermal = Section("Power and temperature", [
        timeseries_panel("Power vs limit", [
            Q(f"gpu_power_usage_watts{{{G}}}", LEGEND),
            Q(f"gpu_power_limit_watts{{{G}}}", LEGEND + " limit"),
        ], "watt", neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Power / limit", [
            Q(f"gpu_power_usage_watts{{{G}}} / gpu_power_limit_watts{{{G}}}", LEGEND)],
            "percentunit", high_bad(0.9, 0.98), w=8, min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="Near 100 % the driver caps clocks (sw_power_cap)."),
        timeseries_panel("Temperature", [Q(f"gpu_temperature_celsius{{{G}}}", LEGEND)], "celsius", TEMPERATURE,
                         w=8, fill=0, show_thresholds=True),
        timeseries_panel("Energy per hour", [
            Q(f"increase(gpu_energy_consumed_joules_total{{{G}}}[1h]) / {JOULES_PER_KWH}", LEGEND)],
            "kwatth", neutral(), w=8, min_val=0, fill=0,
            description="kWh each GPU drew in the hour before each point (gpu_energy_consumed_joules_total)."),
        stat_panel("Energy in range", [
            f"sum(increase(gpu_energy_consumed_joules_total{{{G}}}[$__range])) / {JOULES_PER_KWH}"],
            "kwatth", neutral(), w=4, h=8, decimals=1, graph=False,
            description="kWh the selected GPUs drew in the selected time range."),
        stat_panel("$ per GPU-hour", [
            Q(f"avg(instance_gpu:gpu_cost_dollars_per_hour:share{{{G}}})", "paid"),
            Q(f"sum(instance_gpu:gpu_cost_dollars_per_hour:share{{{G}}}) "
              f"/ (sum(instance_gpu:gpu_utilization:avg_ratio_10m{{{G}}}) > 0)", "per busy hour")],
            "currencyUSD", neutral(), w=6, h=8, decimals=2, names=True, graph=False,
            description="Paid: the host's hourly cost shared over its GPUs, averaged over the selected GPUs. Per "
                        "busy hour: what an hour of GPU work really costs at the current utilization (10 m)."),
        timeseries_panel("ECC and Xid errors per hour", [
            Q(f"sum by (instance, gpu, type) (increase(gpu_ecc_errors_total{{{G}}}[1h]))", LEGEND + " ECC {{type}}"),
            Q(f"sum by (instance, gpu, xid) (increase(gpu_xid_errors_total{{{G}}}[1h]))", LEGEND + " Xid {{xid}}"),
        ], "none", any_bad(), w=6, min_val=0, fill=0),
        table_panel("GPU inventory", [f"gpu_info{{{G}}}"], "none", neutral(), w=24, h=6,
                    hide=("Time", "Value", "__name__", "job"),
                    description="Model, driver and PCI bus id of every selected GPU."),
    ])
    return build_dashboard(
        UID, TITLE, "GPU hosts: utilization, GPM activity, memory, power, temperature, clocks, errors, processes.",
        [fleet, health, compute, memory, thermal], extra_tags=["gpu"], variables=variables,
        alert_matchers='instance=~"$instance",gpu=~"$gpu"')


__all__ = ["UID", "TITLE", "build"]

"""mlscope-endpoints: SageMaker endpoints, per region, endpoint and variant.

Variables `region`, `endpoint` and `variant` (multi-select, All = .*). Endpoint-level recording rules
carry no `variant` label, so they are filtered by region and endpoint only. Raw SageMaker counters come
from 1-minute CloudWatch periods, so their rates use a fixed 5m window rather than $__rate_interval.
The "Worst endpoints" table ignores the endpoint variable (it is how you pick one) but follows the region.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard

from . import promql
from .promql import one_replica
from .panels import (Q, Section, build_dashboard, column_link, column_thresholds, high_bad, low_bad, neutral,
                     no_data_text, query_variable, stat_panel, state_panel, steps, table_panel, timeseries_panel,
                     value_text, BLUE, GREEN, ORANGE, RED)

UID = "mlscope-endpoints"
TITLE = "MLScope / Endpoints"

R = 'region=~"$region"'
E = f'{R},endpoint=~"$endpoint"'
EV = f'{E},variant=~"$variant"'
AVAILABILITY = low_bad(0.99, 0.999)
LATENCY = high_bad(0.5, 1)          # default latency objective is 1 s
UTILIZATION = high_bad(0.7, 0.9)
BURN = steps(GREEN, (promql.BURN_WARN, ORANGE), (promql.BURN_PAGE, RED))
WORST_N = 10
# Invocations per second per running instance.
PER_INSTANCE = (f"variant:sagemaker_requests:rate5m{{{EV}}} / on (account, region, endpoint, variant) "
                f"(sum by (account, region, endpoint, variant) ({one_replica(f'sagemaker_variant_instances{{{EV}}}')}) > 0)")
OPEN_ENDPOINT = ("/d/mlscope-endpoints?var-region=${__data.fields.region}&var-endpoint=${__data.fields.endpoint}"
                 "&${__url_time_range}")


def _worst(expr: str) -> str:
    """`expr` for the WORST_N endpoints with the least error budget left (in the selected regions), one
    unnamed series per endpoint so the table's merge joins the columns on the endpoint's labels alone."""
    return f"max by ({promql.EP}) ({expr}) and on ({promql.EP}) bottomk({WORST_N}, {promql.budget_left(R)})"


def status_and_slo():
    return Section("Status and SLO", [
        state_panel("Status", [Q(promql.status(E), "{{endpoint}}")], "none",
                    steps(GREEN, (promql.CHANGING, ORANGE), (promql.NO_INSTANCE, RED)), w=24, h=6,
                    mappings=[value_text(promql.STATUS_TEXT)],
                    description="InService with a running instance is up. Changing (creating, updating, rolling "
                                "back), no running instance in any variant, and out of service or failed are down "
                                "for availability."),
        stat_panel("Availability 1d", [Q(f"endpoint:sagemaker_availability:ratio_rate1d{{{E}}}", "{{endpoint}}")],
                   "percentunit", AVAILABILITY, w=6, decimals=3, names=True,
                   description="1 − downtime / total time over 24 h. A minute is down when the endpoint is not "
                               "InService, has no running instance, or (with traffic) its 5xx ratio is above what "
                               "its SLO allows."),
        stat_panel("Availability 30d", [Q(f"endpoint:sagemaker_availability:ratio_rate30d{{{E}}}", "{{endpoint}}")],
                   "percentunit", AVAILABILITY, w=6, decimals=3, names=True, graph=False,
                   description="1 − downtime / total time over 30 days, the SLO window."),
        stat_panel("SLO objective", [Q(f"endpoint:sagemaker_slo_objective:ratio{{{E}}}", "{{endpoint}}")],
                   "percentunit", neutral(), w=6, decimals=3, names=True, graph=False,
                   description="From the endpoint tag mlscope:slo (default 0.999)."),
        stat_panel("Error budget left (30d)", [Q(promql.budget_left(E), "{{endpoint}}")],
                   "percentunit", low_bad(0.25, 0.5), w=6, decimals=1, names=True, graph=False,
                   description="1 − (30-day 5xx ratio / (1 − SLO)). Below 0: the SLO is missed."),
        timeseries_panel("Availability", [
            Q(f"endpoint:sagemaker_availability:ratio_rate1h{{{E}}}", "{{endpoint}} 1h"),
            Q(f"endpoint:sagemaker_availability:ratio_rate1d{{{E}}}", "{{endpoint}} 1d"),
            Q(f"endpoint:sagemaker_slo_objective:ratio{{{E}}}", "{{endpoint}} SLO"),
        ], "percentunit", AVAILABILITY, w=12, decimals=3, max_val=1, show_thresholds=True, fill=0,
            description="Time-based availability over the last hour and day, against the objective."),
        timeseries_panel("Error ratios", [
            Q(f"endpoint:sagemaker_5xx_errors:ratio_rate5m{{{E}}}", "{{endpoint}} 5xx"),
            Q(f"endpoint:sagemaker_4xx_errors:ratio_rate5m{{{E}}}", "{{endpoint}} 4xx"),
        ], "percentunit", high_bad(0.001, 0.01), w=12, min_val=0,
            description="Errors / invocations over 5 m. 5xx count against the SLO; 4xx are client errors."),
    ])


def error_budget():
    return Section("Error budget burn", [
        stat_panel("Burn rate now", [Q(promql.burn_rate(w, E), "{{endpoint}} " + w) for w in ("1h", "6h", "3d")],
                   "none", BURN, w=8, decimals=1, names=True, graph=False,
                   description="5xx ratio ÷ error budget (1 − objective). 1 spends the 30-day budget in exactly 30 "
                               f"days; {promql.BURN_PAGE} over 1 h and 6 over 6 h page, 1 over 3 d opens a ticket."),
        stat_panel("Budget exhausted in", [Q(promql.budget_exhausted_in(E), "{{endpoint}}")], "s",
                   steps(RED, (86400, ORANGE), (7 * 86400, GREEN)), w=4, names=True, graph=False,
                   mappings=[no_data_text("not burning", GREEN)],
                   description="30-day error budget left ÷ the last day's burn rate. Red under a day, orange under "
                               "a week; \"not burning\" when no request failed in the last day."),
        timeseries_panel("Burn rate", [Q(promql.burn_rate(w, E), "{{endpoint}} " + w) for w in ("1h", "6h", "3d")],
                         "none", BURN, w=12, min_val=0, fill=0, show_thresholds=True,
                         description="Error-budget burn rate over the alert windows, with the 1× and 14.4× lines."),
        timeseries_panel("Error budget left, 30-day burndown", [Q(promql.budget_left(E), "{{endpoint}}")],
                         "percentunit", low_bad(0, 0.25), w=12, max_val=1, fill=0, show_thresholds=True,
                         time_from="30d",
                         description="30-day error budget remaining over the last 30 days. Below 0: the SLO is "
                                     "missed."),
        timeseries_panel("Latency SLO burn rate",
                         [Q(promql.burn_rate(w, E, budget="latency"), "{{endpoint}} " + w) for w in ("1h", "6h", "3d")],
                         "none", BURN, w=12, min_val=0, fill=0, show_thresholds=True,
                         description="Share of requests slower than the latency objective ÷ the share the latency "
                                     "SLO allows (mlscope:config:latency_slo_objective_ratio), from CloudWatch's "
                                     "threshold statistic."),
    ])


def worst_endpoints():
    table = table_panel(
        f"Worst {WORST_N} endpoints",
        [Q(_worst(promql.latency_ratio("99", R))), Q(_worst(promql.latency_ratio("95", R))),
         Q(_worst(f"endpoint:sagemaker_5xx_errors:ratio_rate1h{{{R}}}")),
         Q(_worst(f"endpoint:sagemaker_cost_per_1k_requests_dollars:1h{{{R}}}")),
         Q(_worst(promql.budget_left(R)))],
        "none", neutral(), w=24, h=8, merge=True, hide=("Time",),
        rename={"Value #A": "p99 ÷ objective", "Value #B": "p95 ÷ objective", "Value #C": "5xx 1h",
                "Value #D": "$ per 1k requests", "Value #E": "budget left"},
        sort_by="budget left", sort_desc=False,
        description=f"The {WORST_N} endpoints with the least 30-day error budget left in the selected regions "
                    "(the endpoint variable does not apply). Click an endpoint to select it.")
    latency = [(None, GREEN), (promql.LATENCY_WARN, ORANGE), (promql.LATENCY_BAD, RED)]
    table = column_thresholds(table, "p99 ÷ objective", latency, unit="percentunit")
    table = column_thresholds(table, "p95 ÷ objective", latency, unit="percentunit")
    table = column_thresholds(table, "5xx 1h", [(None, GREEN), (0.001, ORANGE), (0.01, RED)], unit="percentunit")
    table = column_thresholds(table, "$ per 1k requests", [(None, BLUE)], unit="currencyUSD")
    table = column_thresholds(table, "budget left", [(None, RED), (0, ORANGE), (0.25, GREEN)], unit="percentunit")
    table = column_link(table, "endpoint", "Select ${__data.fields.endpoint}", OPEN_ENDPOINT)
    return Section("Worst endpoints", [table])


def traffic():
    return Section("Traffic", [
        timeseries_panel("Throughput", [
            Q(f"variant:sagemaker_requests:rate5m{{{EV}}}", "{{endpoint}}/{{variant}}"),
        ], "reqps", neutral(), w=6, stack=True, min_val=0, description="Invocations per second per variant (5 m)."),
        timeseries_panel("Throughput per instance", [Q(PER_INSTANCE, "{{endpoint}}/{{variant}}")], "reqps",
                         neutral(), w=6, min_val=0, fill=0,
                         description="Invocations per second per running instance: the load each instance "
                                     "carries. Rising with flat latency: headroom; with rising latency: saturation."),
        timeseries_panel("Errors/s by type", [
            Q(f"sum by (endpoint, variant) ({one_replica(f'rate(sagemaker_invocation_5xx_errors_total{{{EV}}}[5m])')})",
              "{{endpoint}}/{{variant}} 5xx"),
            Q(f"sum by (endpoint, variant) ({one_replica(f'rate(sagemaker_invocation_4xx_errors_total{{{EV}}}[5m])')})",
              "{{endpoint}}/{{variant}} 4xx"),
            Q(f"sum by (endpoint, variant) ({one_replica(f'rate(sagemaker_invocation_model_errors_total{{{EV}}}[5m])')})",
              "{{endpoint}}/{{variant}} model"),
        ], "reqps", steps(GREEN, (0.01, RED)), w=6, min_val=0,
            description="Invocation errors per second. Model errors are also counted as 4xx/5xx by SageMaker."),
        timeseries_panel("In-flight requests", [
            Q(f"endpoint:sagemaker_requests_in_flight:little5m{{{E}}}", "{{endpoint}}"),
        ], "short", neutral(), w=6, min_val=0,
            description="Little's law: arrival rate × (model + overhead mean latency), 5 m."),
    ])


def latency():
    load = timeseries_panel("Latency against load", [
        Q(f'max by (endpoint, variant) (sagemaker_model_latency_seconds{{{EV},quantile="0.95"}})',
          "{{endpoint}}/{{variant}} p95"),
        Q(PER_INSTANCE, "{{endpoint}}/{{variant}} req/s per instance"),
    ], "s", LATENCY, w=12, min_val=0, fill=0,
        description="p95 model latency (left axis) next to the requests per second each instance carries (right "
                    "axis). Latency that climbs with load per instance means the variant needs more instances.")
    load = load.override_by_regexp(".*req/s per instance", [
        _prop("unit", "reqps"), _prop("custom.axisPlacement", "right"), _prop("custom.lineStyle", {"fill": "dash",
                                                                                                 "dash": [10, 10]})])
    return Section("Latency", [
        timeseries_panel("Model latency p50 / p95 / p99", [
            Q(one_replica(f"sagemaker_model_latency_seconds{{{EV}}}"), "{{endpoint}}/{{variant}} q{{quantile}}"),
            Q(f"endpoint:sagemaker_model_latency_seconds:mean5m{{{E}}}", "{{endpoint}} mean"),
            Q(f"endpoint:sagemaker_latency_objective_seconds:value{{{E}}}", "{{endpoint}} objective"),
        ], "s", LATENCY, w=12, min_val=0, fill=0,
            description="ModelLatency from CloudWatch (µs converted to seconds): quantiles per variant, the 5 m "
                        "mean, and the endpoint's latency objective."),
        load,
        timeseries_panel("Overhead latency p50 / p95 / p99", [
            Q(one_replica(f"sagemaker_overhead_latency_seconds{{{EV}}}"), "{{endpoint}}/{{variant}} q{{quantile}}"),
            Q(f"endpoint:sagemaker_overhead_latency_seconds:mean5m{{{E}}}", "{{endpoint}} mean"),
        ], "s", high_bad(0.05, 0.2), w=12, min_val=0, fill=0,
            description="SageMaker's own overhead added on top of the model (asynchronous endpoints have none)."),
        stat_panel("Worst p95 and p99 ÷ objective", [
            Q(promql.latency_ratio("95", E), "{{endpoint}} p95"),
            Q(promql.latency_ratio("99", E), "{{endpoint}} p99"),
        ], "percentunit", high_bad(promql.LATENCY_WARN, promql.LATENCY_BAD), w=12, h=8, names=True, decimals=0,
            graph=False, description="The slowest variant's p95 and p99 model latency as a share of the endpoint's "
                                     "latency objective (tag mlscope:latency-objective-seconds, default 1 s)."),
    ])


def _prop(name: str, value):
    return dashboard.DynamicConfigValue(id_val=name, value=value)


def capacity():
    return Section("Capacity", [
        timeseries_panel("Instances", [
            Q(one_replica(f"sagemaker_variant_instances{{{EV}}}"), "{{endpoint}}/{{variant}} current"),
            Q(one_replica(f"sagemaker_variant_desired_instances{{{EV}}}"), "{{endpoint}}/{{variant}} desired"),
        ], "none", neutral(), w=8, min_val=0, decimals=0, fill=0),
        timeseries_panel("Utilization per instance (CPU, GPU)", [
            Q(one_replica(f"sagemaker_instance_cpu_utilization_ratio{{{EV}}}"), "{{endpoint}}/{{variant}} CPU"),
            Q(one_replica(f"sagemaker_instance_gpu_utilization_ratio{{{EV}}}"), "{{endpoint}}/{{variant}} GPU"),
        ], "percentunit", UTILIZATION, w=8, min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="CloudWatch sums CPU over vCPUs and GPU over GPUs; MLScope normalises both to 0–1 per "
                        "instance."),
        timeseries_panel("Utilization per instance (memory, GPU memory, disk)", [
            Q(one_replica(f"sagemaker_instance_memory_utilization_ratio{{{EV}}}"), "{{endpoint}}/{{variant}} memory"),
            Q(one_replica(f"sagemaker_instance_gpu_memory_utilization_ratio{{{EV}}}"), "{{endpoint}}/{{variant}} GPU memory"),
            Q(one_replica(f"sagemaker_instance_disk_utilization_ratio{{{EV}}}"), "{{endpoint}}/{{variant}} disk"),
        ], "percentunit", UTILIZATION, w=8, min_val=0, max_val=1, fill=0, show_thresholds=True),
    ])


def cost():
    return Section("Cost", [
        timeseries_panel("Cost $/hour", [
            Q(one_replica(f"sagemaker_variant_hourly_cost_dollars{{{EV}}}"), "{{endpoint}}/{{variant}} ({{instance_type}})"),
        ], "currencyUSD", neutral(), w=8, stack=True, min_val=0,
            description="Price per instance-hour × current instance count, per variant."),
        timeseries_panel("Cost per 1k requests", [
            Q(f"endpoint:sagemaker_cost_per_1k_requests_dollars:1h{{{E}}}", "{{endpoint}} 1h"),
            Q(f"endpoint:sagemaker_cost_per_1k_requests_dollars:1d{{{E}}}", "{{endpoint}} 1d"),
        ], "currencyUSD", neutral(), w=8, min_val=0, decimals=4, fill=0,
            description="Hourly cost / requests per hour × 1000."),
        stat_panel("Endpoint $/hour", [Q(f"endpoint:sagemaker_cost_dollars_per_hour:sum{{{E}}}", "{{endpoint}}")],
                   "currencyUSD", neutral(), w=8, h=8, names=True, decimals=2),
        table_panel("Variants", [one_replica(f"sagemaker_variant_info{{{EV}}}")], "none", steps(BLUE), w=24, h=6,
                    hide=("Time", "Value", "__name__", "job"),
                    description="Every selected variant with its instance type (sagemaker_variant_info)."),
    ])


def build():
    variables = [
        query_variable("region", "Region", "label_values(sagemaker_endpoint_info, region)"),
        query_variable("endpoint", "Endpoint", f"label_values(sagemaker_endpoint_info{{{R}}}, endpoint)"),
        query_variable("variant", "Variant", f"label_values(sagemaker_variant_info{{{E}}}, variant)"),
    ]
    return build_dashboard(
        UID, TITLE, "SageMaker endpoints: status, SLO and error-budget burn, the worst endpoints, traffic, latency "
                    "against load, capacity and cost.",
        [status_and_slo(), error_budget(), worst_endpoints(), traffic(), latency(), capacity(), cost()],
        extra_tags=["sagemaker"], variables=variables, alert_matchers=E)


__all__ = ["UID", "TITLE", "build"]

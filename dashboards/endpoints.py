"""mlscope-endpoints: SageMaker endpoints, per endpoint and variant.

Variables `endpoint` and `variant` (multi-select, All = .*). Endpoint-level recording rules carry
no `variant` label, so they are filtered by endpoint only. Raw SageMaker counters come from
1-minute CloudWatch periods, so their rates use a fixed 5m window rather than $__rate_interval.
"""

from __future__ import annotations

from .panels import (Q, Section, build_dashboard, high_bad, low_bad, neutral, query_variable, stat_panel,
                     steps, table_panel, timeseries_panel, GREEN, RED, BLUE)

UID = "mlscope-endpoints"
TITLE = "MLScope / Endpoints"

E = 'endpoint=~"$endpoint"'
EV = 'endpoint=~"$endpoint",variant=~"$variant"'
AVAILABILITY = low_bad(0.99, 0.999)
LATENCY = high_bad(0.5, 1)          # default latency objective is 1 s
UTILIZATION = high_bad(0.7, 0.9)


def build():
    variables = [
        query_variable("endpoint", "Endpoint", "label_values(sagemaker_endpoint_info, endpoint)"),
        query_variable("variant", "Variant", 'label_values(sagemaker_variant_info{endpoint=~"$endpoint"}, variant)'),
    ]
    slo = Section("Availability and SLO", [
        stat_panel("Availability 24h", [Q(f"endpoint:sagemaker_availability:ratio_rate1d{{{E}}}", "{{endpoint}}")],
                   "percentunit", AVAILABILITY, w=6, decimals=3, names=True,
                   description="Share of non-5xx responses over 24 h."),
        stat_panel("Availability 30d", [Q(f"endpoint:sagemaker_availability:ratio_rate30d{{{E}}}", "{{endpoint}}")],
                   "percentunit", AVAILABILITY, w=6, decimals=3, names=True, graph=False,
                   description="Share of non-5xx responses over 30 days, the SLO window."),
        stat_panel("SLO objective", [Q(f"endpoint:sagemaker_slo_objective:ratio{{{E}}}", "{{endpoint}}")],
                   "percentunit", neutral(), w=6, decimals=3, names=True, graph=False,
                   description="From the endpoint tag mlscope:slo (default 0.999)."),
        stat_panel("Error budget left (30d)",
                   [Q(f"endpoint:sagemaker_error_budget_remaining:ratio_30d{{{E}}}", "{{endpoint}}")],
                   "percentunit", low_bad(0.25, 0.5), w=6, decimals=1, names=True, graph=False,
                   description="1 − (30-day 5xx ratio / (1 − SLO)). Below 0: the SLO is missed."),
        timeseries_panel("Availability", [
            Q(f"endpoint:sagemaker_availability:ratio_rate5m{{{E}}}", "{{endpoint}} 5m"),
            Q(f"endpoint:sagemaker_availability:ratio_rate1h{{{E}}}", "{{endpoint}} 1h"),
            Q(f"endpoint:sagemaker_slo_objective:ratio{{{E}}}", "{{endpoint}} SLO"),
        ], "percentunit", AVAILABILITY, w=12, decimals=3, max_val=1, show_thresholds=True, fill=0),
        timeseries_panel("Error ratios", [
            Q(f"endpoint:sagemaker_5xx_errors:ratio_rate5m{{{E}}}", "{{endpoint}} 5xx"),
            Q(f"endpoint:sagemaker_4xx_errors:ratio_rate5m{{{E}}}", "{{endpoint}} 4xx"),
        ], "percentunit", high_bad(0.001, 0.01), w=12, min_val=0,
            description="Errors / invocations over 5 m. 5xx count against the SLO; 4xx are client errors."),
    ])
    traffic = Section("Traffic", [
        timeseries_panel("Throughput", [
            Q(f"variant:sagemaker_requests:rate5m{{{EV}}}", "{{endpoint}}/{{variant}}"),
        ], "reqps", neutral(), w=8, stack=True, min_val=0, description="Invocations per second per variant (5 m)."),
        timeseries_panel("Errors/s by type", [
            Q(f"sum by (endpoint, variant) (rate(sagemaker_invocation_5xx_errors_total{{{EV}}}[5m]))",
              "{{endpoint}}/{{variant}} 5xx"),
            Q(f"sum by (endpoint, variant) (rate(sagemaker_invocation_4xx_errors_total{{{EV}}}[5m]))",
              "{{endpoint}}/{{variant}} 4xx"),
            Q(f"sum by (endpoint, variant) (rate(sagemaker_invocation_model_errors_total{{{EV}}}[5m]))",
              "{{endpoint}}/{{variant}} model"),
        ], "reqps", steps(GREEN, (0.01, RED)), w=8, min_val=0,
            description="Invocation errors per second. Model errors are also counted as 4xx/5xx by SageMaker."),
        timeseries_panel("In-flight requests", [
            Q(f"endpoint:sagemaker_requests_in_flight:little5m{{{E}}}", "{{endpoint}}"),
        ], "short", neutral(), w=8, min_val=0,
            description="Little's law: arrival rate × (model + overhead mean latency), 5 m."),
    ])
    latency = Section("Latency", [
        timeseries_panel("Model latency p50 / p90 / p99", [
            Q(f"sagemaker_model_latency_seconds{{{EV}}}", "{{endpoint}}/{{variant}} q{{quantile}}"),
            Q(f"endpoint:sagemaker_model_latency_seconds:mean5m{{{E}}}", "{{endpoint}} mean"),
        ], "s", LATENCY, w=9, min_val=0, show_thresholds=True, fill=0,
            description="ModelLatency from CloudWatch (µs converted to seconds): quantiles per variant, 5 m mean."),
        timeseries_panel("Overhead latency p50 / p90 / p99", [
            Q(f"sagemaker_overhead_latency_seconds{{{EV}}}", "{{endpoint}}/{{variant}} q{{quantile}}"),
            Q(f"endpoint:sagemaker_overhead_latency_seconds:mean5m{{{E}}}", "{{endpoint}} mean"),
        ], "s", high_bad(0.05, 0.2), w=9, min_val=0, fill=0,
            description="SageMaker's own overhead added on top of the model (asynchronous endpoints have none)."),
        stat_panel("Worst p99 (model)", [Q(f"endpoint:sagemaker_model_latency_seconds:p99_max{{{E}}}", "{{endpoint}}")],
                   "s", LATENCY, w=6, h=8, names=True,
                   description="The slowest variant's p99 per endpoint, newest settled period."),
    ])
    capacity = Section("Capacity", [
        timeseries_panel("Instances", [
            Q(f"sagemaker_variant_instances{{{EV}}}", "{{endpoint}}/{{variant}} current"),
            Q(f"sagemaker_variant_desired_instances{{{EV}}}", "{{endpoint}}/{{variant}} desired"),
        ], "none", neutral(), w=8, min_val=0, decimals=0, fill=0),
        timeseries_panel("Utilization per instance (CPU, GPU)", [
            Q(f"sagemaker_instance_cpu_utilization_ratio{{{EV}}}", "{{endpoint}}/{{variant}} CPU"),
            Q(f"sagemaker_instance_gpu_utilization_ratio{{{EV}}}", "{{endpoint}}/{{variant}} GPU"),
        ], "percentunit", UTILIZATION, w=8, min_val=0, max_val=1, fill=0, show_thresholds=True,
            description="CloudWatch sums CPU over vCPUs and GPU over GPUs; MLScope normalises both to 0–1 per "
                        "instance."),
        timeseries_panel("Utilization per instance (memory, GPU memory, disk)", [
            Q(f"sagemaker_instance_memory_utilization_ratio{{{EV}}}", "{{endpoint}}/{{variant}} memory"),
            Q(f"sagemaker_instance_gpu_memory_utilization_ratio{{{EV}}}", "{{endpoint}}/{{variant}} GPU memory"),
            Q(f"sagemaker_instance_disk_utilization_ratio{{{EV}}}", "{{endpoint}}/{{variant}} disk"),
        ], "percentunit", UTILIZATION, w=8, min_val=0, max_val=1, fill=0, show_thresholds=True),
    ])
    cost = Section("Cost", [
        timeseries_panel("Cost $/hour", [
            Q(f"sagemaker_variant_hourly_cost_dollars{{{EV}}}", "{{endpoint}}/{{variant}} ({{instance_type}})"),
        ], "currencyUSD", neutral(), w=8, stack=True, min_val=0,
            description="Price per instance-hour × current instance count, per variant."),
        timeseries_panel("Cost per 1k requests", [
            Q(f"endpoint:sagemaker_cost_per_1k_requests_dollars:1h{{{E}}}", "{{endpoint}} 1h"),
            Q(f"endpoint:sagemaker_cost_per_1k_requests_dollars:1d{{{E}}}", "{{endpoint}} 1d"),
        ], "currencyUSD", neutral(), w=8, min_val=0, decimals=4, fill=0,
            description="Hourly cost / requests per hour × 1000."),
        stat_panel("Endpoint $/hour", [Q(f"endpoint:sagemaker_cost_dollars_per_hour:sum{{{E}}}", "{{endpoint}}")],
                   "currencyUSD", neutral(), w=8, h=8, names=True, decimals=2),
        table_panel("Variants", [f"sagemaker_variant_info{{{EV}}}"], "none", steps(BLUE), w=24, h=6,
                    hide=("Time", "Value", "__name__", "job"),
                    description="Every selected variant with its instance type (sagemaker_variant_info)."),
    ])
    return build_dashboard(
        UID, TITLE, "SageMaker endpoints: traffic, latency, errors, SLO and error budget, capacity and cost.",
        [slo, traffic, latency, capacity, cost], extra_tags=["sagemaker"], variables=variables)


__all__ = ["UID", "TITLE", "build"]

"""mlscope-wall: the TV / kiosk overview and Grafana's home dashboard.

Big stats readable across a room, no variables, 30 s refresh. Every number is a fleet-wide
recording rule (docs/recording-rules.md) so the wall stays cheap to refresh. Open it with
/d/mlscope-wall?kiosk
"""

from __future__ import annotations

from .panels import (Q, Section, any_bad, bargauge_panel, build_dashboard, fixed_color_for_query, high_bad,
                     low_bad, neutral, stat_panel, steps, table_panel, GREEN, ORANGE)

UID = "mlscope-wall"
TITLE = "MLScope / Wall"

ENDPOINTS = ("Endpoints", "/d/mlscope-endpoints")
GPUS = ("GPUs", "/d/mlscope-gpus")
COST = ("Cost", "/d/mlscope-cost")
STACK = ("Monitoring stack", "/d/mlscope-stack")

# Default SLO is 0.999 (docs/recording-rules.md): orange under it, red under 99 %.
AVAILABILITY = low_bad(0.99, 0.999)


def build():
    up = Section(None, [
        stat_panel("Availability 24h", ["fleet:sagemaker_availability:ratio_rate1d"], "percentunit", AVAILABILITY,
                   decimals=3, h=5, links=[ENDPOINTS],
                   description="Request-weighted share of non-5xx responses over 24 h, all endpoints."),
        fixed_color_for_query(stat_panel(
            "Availability 30d vs SLO",
            [Q("fleet:sagemaker_availability:ratio_rate30d", "30d"),
             Q("fleet:sagemaker_slo_objective:min_ratio", "SLO")],
            "percentunit", AVAILABILITY, decimals=3, h=5, names=True, graph=False, links=[ENDPOINTS],
            description="30-day fleet availability next to the strictest endpoint SLO objective."), "B"),
        stat_panel("Error budget left (worst endpoint)", ["fleet:sagemaker_error_budget_remaining:min_ratio_30d"],
                   "percentunit", low_bad(0.25, 0.5), decimals=1, h=5, graph=False, links=[ENDPOINTS],
                   description="Smallest remaining 30-day error budget of any endpoint. 0 % or less: SLO missed."),
        stat_panel("Requests/s", ["fleet:sagemaker_requests:rate5m"], "reqps", neutral(), h=5, links=[ENDPOINTS],
                   description="Invocations per second, all endpoints (5 m rate)."),
        stat_panel("Error ratio", ["fleet:sagemaker_errors:ratio_rate5m"], "percentunit", high_bad(0.001, 0.01),
                   decimals=2, h=5, links=[ENDPOINTS],
                   description="(4xx + 5xx) / invocations over 5 m, all endpoints."),
        stat_panel("Worst p99 latency", ["fleet:sagemaker_model_latency_seconds:p99_max"], "s", high_bad(0.5, 1),
                   h=5, links=[ENDPOINTS],
                   description="Highest model-latency p99 of any endpoint variant (newest settled CloudWatch period)."),
    ])
    money = Section(None, [
        stat_panel("Spend $/hour", ["fleet:mlscope_cost_dollars_per_hour:sum"], "currencyUSD", neutral(), h=5,
                   decimals=2, links=[COST], description="SageMaker endpoints + GPU/CPU hosts, dollars per hour now."),
        stat_panel("Projected $/month", ["fleet:mlscope_cost_dollars_per_month:projected"], "currencyUSD", neutral(),
                   h=5, decimals=0, graph=False, links=[COST], description="Current hourly spend × 730 h."),
        stat_panel("Cost per 1k requests", ["fleet:sagemaker_cost_per_1k_requests_dollars:1h"], "currencyUSD",
                   neutral(), h=5, decimals=4, links=[COST],
                   description="SageMaker hourly cost / requests in the last hour × 1000."),
        stat_panel("GPU utilization", ["fleet:gpu_utilization:mean_ratio"], "percentunit",
                   steps(ORANGE, (0.4, GREEN)), h=5, decimals=0, min_val=0, max_val=1, links=[GPUS],
                   description="Mean utilization over every GPU. Orange: most of the fleet is paid for and idle."),
        fixed_color_for_query(stat_panel(
            "Idle GPUs", [Q("fleet:gpus_idle:count or vector(0)", "idle"), Q("fleet:gpus:count", "of")], "none",
            steps(GREEN, (1, ORANGE)), h=5, graph=False, names=True, links=[GPUS],
            description="GPUs under 10 % busy over 10 minutes, out of all GPUs reporting."), "B"),
        stat_panel("Idle GPU $/hour", ["fleet:gpu_idle_cost_dollars_per_hour:sum or vector(0)"], "currencyUSD",
                   steps(GREEN, (0.01, ORANGE)), h=5, decimals=2, links=[COST],
                   description="Share of host cost spent on GPUs under 10 % busy."),
    ])
    health = Section(None, [
        stat_panel("Alerts firing", ['count(ALERTS{alertstate="firing",alertname!="Watchdog"}) or vector(0)'],
                   "none", any_bad(), h=4, graph=False, color_background=True, links=[STACK],
                   description="Prometheus alerts firing now (the always-on Watchdog excluded)."),
        stat_panel("Targets down", ["fleet:targets_down:count"], "none", any_bad(), h=4, graph=False,
                   color_background=True, links=[STACK], description="Scrape targets Prometheus cannot reach."),
        stat_panel("Collectors failing", ["fleet:mlscope_collectors_failing:count"], "none", any_bad(), h=4,
                   graph=False, color_background=True, links=[STACK],
                   description="MLScope collectors whose last run failed (no NVML, no AWS credentials, AWS errors)."),
        stat_panel("CloudWatch data age", ["fleet:sagemaker_data_age_seconds:max"], "s",
                   high_bad(900, 1800), h=4, graph=False, links=[STACK],
                   description="Age of the oldest endpoint's newest settled CloudWatch period. A few minutes is "
                               "normal (settle delay)."),
        stat_panel("GPU power", ["fleet:gpu_power_watts:sum"], "watt", neutral(), h=4, links=[GPUS],
                   description="Total power draw of every GPU."),
        stat_panel("GPU memory used", ["fleet:gpu_memory_used:ratio"], "percentunit", high_bad(0.85, 0.95), h=4,
                   decimals=0, min_val=0, max_val=1, links=[GPUS], description="Σ used / Σ total GPU memory."),
    ])
    lists = Section(None, [
        table_panel("Firing alerts", ['ALERTS{alertstate="firing",alertname!="Watchdog"}'], "none", neutral(),
                    w=14, h=9, hide=("Time", "Value", "__name__", "alertstate"), sort_by="severity", sort_desc=False,
                    description="Prometheus alerts firing now, from the ALERTS series (the Watchdog excluded)."),
        bargauge_panel("Error budget left, worst endpoints",
                       [Q("bottomk(10, endpoint:sagemaker_error_budget_remaining:ratio_30d)", "{{endpoint}}",
                          instant=True)],
                       "percentunit", low_bad(0.25, 0.5), w=10, h=9, min_val=0, max_val=1, links=[ENDPOINTS],
                       description="30-day error budget remaining, the 10 endpoints closest to missing their SLO."),
    ])
    return build_dashboard(
        UID, TITLE, "MLScope overview for a TV in kiosk mode: is it up, is it fast, is it busy, what does it cost.",
        [up, money, health, lists], extra_tags=["overview"], refresh="30s", time_from="now-3h")


__all__ = ["UID", "TITLE", "build"]

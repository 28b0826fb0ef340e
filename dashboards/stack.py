"""mlscope-stack: is the monitoring itself healthy? Scrape targets, MLScope collectors, scrape
durations, CloudWatch calls and errors, rule evaluation, and alert delivery from Prometheus through
Alertmanager to the receivers. No variables.
"""

from __future__ import annotations

from .panels import (Q, Section, any_bad, build_dashboard, high_bad, neutral, stat_panel, state_panel, steps,
                     table_panel, timeseries_panel, value_text, GREEN, ORANGE, RED)
from .cost import cloudwatch_cost_by_kind
from .promql import one_replica

UID = "mlscope-stack"
TITLE = "MLScope / Monitoring stack"

UP_DOWN = [value_text({"0": ("DOWN", RED), "1": ("UP", GREEN)})]
UP_COLOURS = steps(RED, (1, GREEN))


def build():
    summary = Section(None, [
        stat_panel("Targets up", ["sum(up)"], "none", neutral(), graph=False),
        stat_panel("Targets down", ["count(up == 0) or vector(0)"], "none", any_bad(), graph=False,
                   color_background=True),
        stat_panel("Collectors failing", ["count(mlscope_collector_up == 0) or vector(0)"], "none", any_bad(),
                   graph=False, color_background=True),
        stat_panel("Notifications failed (1h)",
                   ["sum(increase(alertmanager_notifications_failed_total[1h])) or vector(0)"], "none", any_bad(),
                   graph=False, decimals=0, description="Alertmanager → receivers, last hour."),
        stat_panel("Alerts dropped (1h)", ["sum(increase(prometheus_notifications_dropped_total[1h])) or vector(0)"],
                   "none", any_bad(), graph=False, decimals=0,
                   description="Alerts Prometheus could not hand to Alertmanager, last hour."),
        stat_panel("CloudWatch errors (1h)", ["sum(increase(mlscope_cloudwatch_errors_total[1h])) or vector(0)"],
                   "none", steps(GREEN, (1, ORANGE), (10, RED)), graph=False, decimals=0),
    ])
    targets = Section("Targets and collectors", [
        table_panel("Scrape targets", [Q("up")], "none", UP_COLOURS, w=8, h=9, hide=("Time", "__name__"),
                    rename={"Value": "state"}, sort_by="state", sort_desc=False, cell_colors=True,
                    mappings=UP_DOWN, description="Every target Prometheus scrapes (the up series)."),
        state_panel("Collector health", [Q("mlscope_collector_up", "{{job}} {{instance}} {{collector}}")], "none",
                    UP_COLOURS, w=16, h=9, mappings=UP_DOWN,
                    description="1 when the collector's last run succeeded (mlscope_collector_up)."),
        timeseries_panel("Collector duration", [
            Q("mlscope_collector_duration_seconds", "{{job}} {{instance}} {{collector}}")], "s", high_bad(5, 30),
            w=8, min_val=0, fill=0),
        timeseries_panel("Collector errors", [
            Q("sum by (job, instance, collector) (rate(mlscope_collector_errors_total[$__rate_interval]))",
              "{{job}} {{instance}} {{collector}}")], "cps", steps(GREEN, (0.01, RED)), w=8, min_val=0, fill=0),
        timeseries_panel("Time since last successful collection", [
            Q("time() - mlscope_collector_last_success_timestamp_seconds", "{{job}} {{instance}} {{collector}}")],
            "s", high_bad(300, 900), w=8, min_val=0, fill=0, show_thresholds=True),
    ])
    scrapes = Section("Scrapes and rules", [
        timeseries_panel("Scrape duration", [Q("scrape_duration_seconds", "{{job}} {{instance}}")], "s",
                         high_bad(1, 5), w=8, min_val=0, fill=0,
                         description="A scrape of an MLScope exporter only reads its cache; it should stay fast."),
        timeseries_panel("Samples per scrape", [Q("scrape_samples_scraped", "{{job}} {{instance}}")], "short",
                         neutral(), w=8, min_val=0, fill=0),
        timeseries_panel("Rule group evaluation time", [
            Q("prometheus_rule_group_last_duration_seconds", "{{rule_group}}"),
        ], "s", high_bad(5, 30), w=8, min_val=0, fill=0),
        timeseries_panel("CloudWatch data age", [
            Q(f"time() - {one_replica('sagemaker_data_timestamp_seconds')}", "{{region}} {{endpoint}}/{{variant}}")],
            "s", high_bad(900, 1800), w=12, min_val=0, fill=0, show_thresholds=True,
            description="Age of the newest settled CloudWatch period per variant. The settle delay keeps it at "
                        "a few minutes."),
        timeseries_panel("Rule evaluation failures", [
            Q("sum by (rule_group) (rate(prometheus_rule_evaluation_failures_total[$__rate_interval]))",
              "{{rule_group}}")], "cps", any_bad(), w=12, min_val=0, fill=0),
    ])
    cloudwatch = Section("CloudWatch API", [
        timeseries_panel("CloudWatch requests", [
            Q("sum by (region, api) (rate(mlscope_cloudwatch_requests_total[$__rate_interval]))",
              "{{region}} {{api}}")], "reqps", neutral(), w=8, min_val=0),
        timeseries_panel("CloudWatch metrics requested", [
            Q("sum by (region) (rate(mlscope_cloudwatch_metrics_requested_total[$__rate_interval]))", "{{region}}")],
            "cps", neutral(), w=8, min_val=0, description="What CloudWatch bills for ($0.01 per 1,000), summed over the exporters: the "
                        "two replicas of an HA pair each poll, so the pair pays twice."),
        timeseries_panel("CloudWatch errors", [
            Q("sum by (region, api, code) (rate(mlscope_cloudwatch_errors_total[$__rate_interval]))",
              "{{region}} {{api}} {{code}}")], "cps", steps(GREEN, (0.001, RED)), w=8, min_val=0,
            description="Throttling, auth and other AWS errors by API and error code."),
        cloudwatch_cost_by_kind(w=24),
    ])
    delivery = Section("Alert delivery", [
        timeseries_panel("Prometheus → Alertmanager", [
            Q("sum(rate(prometheus_notifications_sent_total[$__rate_interval]))", "sent"),
            Q("sum(rate(prometheus_notifications_errors_total[$__rate_interval]))", "errors"),
            Q("sum(rate(prometheus_notifications_dropped_total[$__rate_interval]))", "dropped"),
        ], "cps", neutral(), w=8, min_val=0),
        timeseries_panel("Prometheus notification queue", [
            Q("prometheus_notifications_queue_length", "queued"),
            Q("prometheus_notifications_alertmanagers_discovered", "Alertmanagers discovered"),
        ], "none", steps(RED, (1, GREEN)), w=8, min_val=0, fill=0,
            description="Red when no Alertmanager is discovered: alerts go nowhere."),
        timeseries_panel("Alertmanager → receivers", [
            Q("sum by (integration) (rate(alertmanager_notifications_total[$__rate_interval]))",
              "{{integration}} sent"),
            Q("sum by (integration) (rate(alertmanager_notifications_failed_total[$__rate_interval]))",
              "{{integration}} failed"),
        ], "cps", neutral(), w=8, min_val=0),
        table_panel("Firing alerts", ['ALERTS{alertstate="firing"}'], "none", neutral(), w=12, h=8,
                    hide=("Time", "Value", "__name__", "alertstate"), sort_by="severity", sort_desc=False,
                    description="Every Prometheus alert firing now, the Watchdog included (it proves the pipeline)."),
        table_panel("Exporter versions", ["mlscope_build_info"], "none", neutral(), w=12, h=8,
                    hide=("Time", "Value", "__name__")),
    ])
    return build_dashboard(
        UID, TITLE, "Health of MLScope itself: targets, collectors, scrapes, CloudWatch calls, rules, alert delivery.",
        [summary, targets, scrapes, cloudwatch, delivery], extra_tags=["meta"])


__all__ = ["UID", "TITLE", "build"]

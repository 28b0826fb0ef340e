"""mlscope-rightsizing: what the rightsizer (`mlscope rightsize --serve`) found, what it would save, and
each subject's utilization against the profile's target. No variables: every subject is shown.

Subjects are SageMaker variants (`endpoint`, `variant`) and hosts (`instance`); the series carry both
sets of labels, the ones that do not apply are empty, so a row shows whichever applies.
"""

from __future__ import annotations

from .panels import (Q, Section, bargauge_panel, build_dashboard, color_column, high_bad, neutral, stat_panel,
                     steps, table_panel, timeseries_panel, BLUE, GREEN, ORANGE, RED)

UID = "mlscope-rightsizing"
TITLE = "MLScope / Rightsizing"

SUBJECT = "kind, account, region, endpoint, variant, instance"
M = "mlscope_rightsizing_"
SAVINGS_TOTAL = "fleet:mlscope_rightsizing_estimated_monthly_savings_dollars:sum"
SAVINGS_BY_KIND = "kind:mlscope_rightsizing_estimated_monthly_savings_dollars:sum"
FINDINGS = "finding:mlscope_rightsizing_subjects:count"
# p99 of the 5-minute maxima over the lookback, as a share of the profile's target for that resource:
# under 0.5 there is room to shrink, over 1 the subject runs hotter than the profile allows.
P99_OF_TARGET = f'{M}utilization_ratio{{statistic="p99"}} / on () group_left () max({M}target_utilization_ratio)'
OF_TARGET_COLOURS = [(None, BLUE), (0.5, GREEN), (1, RED)]
RISK_COLOURS = [(None, GREEN), (2, ORANGE), (3, RED)]


def _count(finding: str) -> str:
    return f'sum({FINDINGS}{{finding=~"{finding}"}}) or vector(0)'


def build():
    summary = Section(None, [
        stat_panel("Savings available $/month", [SAVINGS_TOTAL], "currencyUSD", neutral(), decimals=0,
                   description="What every subject's rank-1 option would save per month (730 h); options that "
                               "cost more count 0."),
        stat_panel("Endpoints $/month", [f'{SAVINGS_BY_KIND}{{kind="sagemaker_variant"}} or vector(0)'],
                   "currencyUSD", neutral(), decimals=0, description="Savings on SageMaker endpoint variants."),
        stat_panel("Hosts $/month", [f'{SAVINGS_BY_KIND}{{kind="host"}} or vector(0)'], "currencyUSD", neutral(),
                   decimals=0, description="Savings on GPU and CPU hosts."),
        stat_panel("Over-provisioned or idle", [_count("Overprovisioned|Idle")], "none", steps(GREEN, (1, ORANGE)),
                   graph=False, description="Subjects whose history says less capacity would do."),
        stat_panel("Under-provisioned", [_count("Underprovisioned")], "none", steps(GREEN, (1, RED)), graph=False,
                   description="Subjects that need more capacity (CPU, GPU, memory, latency or throughput)."),
        stat_panel("Last analysis", [f"time() - max({M}last_run_timestamp_seconds)"], "s",
                   high_bad(2 * 3600, 6 * 3600), graph=False,
                   description="Age of the served report; the rightsizer re-runs every --interval (1h). "
                               f"Failed runs: {M}errors_total."),
    ])
    findings = Section("Findings", [
        color_column(table_panel(
            "Findings and savings",
            [Q(f"max by ({SUBJECT}, instance_type) ({M}estimated_monthly_savings_dollars) "
               f"* on ({SUBJECT}) group_left (finding) max by ({SUBJECT}, finding) ({M}finding)"),
             Q(f"max by ({SUBJECT}, instance_type) ({M}recommended_instances)"),
             Q(f"max by ({SUBJECT}, instance_type) ({M}performance_risk)"),
             Q(f'max by ({SUBJECT}, current_type) '
               f'(label_join({M}current_hourly_cost_dollars, "current_type", "", "instance_type"))'),
             Q(f"max by ({SUBJECT}) ({M}current_instances)")],
            "none", neutral(), w=24, h=10, merge=True, hide=("Time", "kind", "account"),
            rename={"Value #A": "savings $/month", "instance_type": "recommended type",
                    "Value #B": "recommended instances", "Value #C": "risk (0-4)", "current_type": "current type",
                    "Value #D": "current $/hour", "Value #E": "current instances"},
            column_units={"savings $/month": "currencyUSD", "current $/hour": "currencyUSD"},
            sort_by="savings $/month",
            description="One row per subject: the rightsizer's finding and its rank-1 option. Savings are per "
                        "month (730 h) and negative when the option costs more. `mlscope rightsize` prints all "
                        "options."),
            "risk (0-4)", RISK_COLOURS),
        bargauge_panel("Savings by subject $/month", [
            Q(f"sort_desc(topk(15, max by ({SUBJECT}) ({M}estimated_monthly_savings_dollars)))",
              "{{endpoint}} {{variant}} {{instance}}", instant=True)],
            "currencyUSD", neutral(), w=12, h=9, min_val=0, decimals=0,
            description="The 15 subjects that would save the most."),
        timeseries_panel("Savings available over time", [
            Q(SAVINGS_TOTAL, "all"), Q(SAVINGS_BY_KIND, "{{kind}}")], "currencyUSD", neutral(), w=12, h=9,
            min_val=0, decimals=0, fill=0,
            description="Falls when recommendations are applied; rises when demand falls or capacity is added."),
    ])
    utilization = Section("Utilization against the profile's target", [
        color_column(table_panel(
            "Utilization per subject and resource",
            [Q(f'max by ({SUBJECT}, resource) ({M}utilization_ratio{{statistic="p50"}})'),
             Q(f'max by ({SUBJECT}, resource) ({M}utilization_ratio{{statistic="p99"}})'),
             Q(f'max by ({SUBJECT}, resource) ({M}utilization_ratio{{statistic="max"}})'),
             Q(f'max by ({SUBJECT}, resource) ({M}utilization_ratio{{statistic="max"}}) * 0 '
               f"+ on () group_left () max({M}target_utilization_ratio)"),
             Q(f"max by ({SUBJECT}, resource) ({P99_OF_TARGET})")],
            "percentunit", neutral(), w=14, h=10, merge=True, hide=("Time", "kind", "account"),
            rename={"Value #A": "p50", "Value #B": "p99", "Value #C": "max", "Value #D": "target",
                    "Value #E": "p99 / target"},
            sort_by="p99 / target",
            description="Statistics of the 5-minute maxima over the lookback, 0-1 per instance. p99 / target "
                        "under 50 %: room to shrink (blue); over 100 %: hotter than the profile allows (red)."),
            "p99 / target", OF_TARGET_COLOURS),
        bargauge_panel("Busiest resource per subject, p99 / target", [
            Q(f"sort_desc(max by (kind, endpoint, variant, instance) ({P99_OF_TARGET}))",
              "{{endpoint}} {{variant}} {{instance}}", instant=True)],
            "percentunit", steps(BLUE, (0.5, GREEN), (1, RED)), w=10, h=10, min_val=0, max_val=1.5,
            description="Each subject's busiest resource against its target: what decides its finding."),
    ])
    return build_dashboard(
        UID, TITLE, "What the rightsizer found for each SageMaker variant and host, what its options would save, "
                    "and utilization against the profile's target.",
        [summary, findings, utilization], extra_tags=["cost", "rightsizing"], time_from="now-7d")


__all__ = ["UID", "TITLE", "build"]

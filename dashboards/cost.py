"""mlscope-cost: what the fleet costs, who spends it (allocation keys, budgets, month to date, forecast),
what it costs per 1k requests, what is wasted, what each self-hosted model costs, and what the monitoring
itself costs in CloudWatch API calls. No variables: everything is shown.

Self-hosted models run on hosts: their $/hour (model:cost_dollars_per_hour:sum, alerts/models.rules.yml) is
a split of their hosts' GPU spend, so it is inside "Hosts $/hour", the fleet total and the host's team and
project, never added to them again.
"""

from __future__ import annotations

from .panels import (Q, Section, bargauge_panel, build_dashboard, color_column, high_bad, neutral, stat_panel, steps,
                     table_panel, timeseries_panel, GREEN, ORANGE, RED)

UID = "mlscope-cost"
TITLE = "MLScope / Cost"

HOURS_PER_MONTH = 730
CLOUDWATCH_DOLLARS_PER_METRIC = "0.01 / 1000"   # per 1,000 GetMetricData metrics or GetMetricStatistics requests
VARIANT = "region, endpoint, variant"
# The rightsizer's finding (`mlscope rightsize --serve`) is the one definition of over/under-provisioned;
# the value is what its rank-1 option would save per month.
FINDING = (f'max by ({VARIANT}, finding) (mlscope_rightsizing_finding{{kind="sagemaker_variant"}}) '
           f'* on ({VARIANT}) group_left () '
           f'max by ({VARIANT}) (mlscope_rightsizing_estimated_monthly_savings_dollars{{kind="sagemaker_variant"}})')


MODEL = "job, instance, model"
# A model without a request in the last hour is idle, as an endpoint is (alerts/cost.rules.yml).
IDLE_MODELS = "sum(model:cost_dollars_per_hour:sum and on (job, instance, model) (model:requests:rate1h == 0))"
# A model's spend goes to its host's team (the host's `team` label, as team:mlscope_cost_dollars_per_hour:sum).
MODEL_BY_TEAM = ('sum by (team) (label_replace(model:cost_dollars_per_hour:sum * on (instance) group_left (team) '
                 'group by (instance, team) (mlscope_host_hourly_cost_dollars), "team", "(untagged)", "team", ""))')

UNTAGGED_SHARE = ('(sum({key}:mlscope_cost_dollars_per_hour:sum{{{key}="(untagged)"}}) or vector(0))'
                  ' / sum({key}:mlscope_cost_dollars_per_hour:sum)')
BUDGET_USED = steps(GREEN, (0.8, ORANGE), (1, RED))


def _allocation() -> Section:
    """Spend by allocation key, month to date and forecast against the budgets (alerts/allocation.yml)."""
    return Section("Allocation and budgets (calendar month)", [
        stat_panel("Month to date", ["fleet:mlscope_cost_dollars:month_to_date"], "currencyUSD", neutral(), decimals=0,
                   description="Spend since the 1st of the month (UTC unless alerts/allocation.yml says otherwise)."),
        stat_panel("Forecast month-end", ["fleet:mlscope_cost_dollars:forecast_month_end"], "currencyUSD", neutral(),
                   decimals=0, description="Month to date + the trailing 7-day mean $/hour × the hours left."),
        stat_panel("Fleet budget used", [
            "fleet:mlscope_cost_dollars:month_to_date / on () fleet:mlscope_budget_dollars_per_month:value"],
            "percentunit", BUDGET_USED, decimals=1, description="Month to date / the fleet's monthly budget."),
        stat_panel("Idle $/month", ["fleet:mlscope_idle_cost_dollars_per_month:projected"], "currencyUSD",
                   steps(GREEN, (1, ORANGE)), decimals=0,
                   description="Endpoints without a request in the last hour + GPUs under 10 % busy, × 730 h."),
        stat_panel("Untagged share (team)", [UNTAGGED_SHARE.format(key="team")], "percentunit",
                   steps(GREEN, (0.1, ORANGE)), decimals=1,
                   description="Spend with no team tag (endpoints) or label (hosts): nobody is accountable for it."),
        stat_panel("Untagged share (project)", [UNTAGGED_SHARE.format(key="project")], "percentunit",
                   steps(GREEN, (0.1, ORANGE)), decimals=1),
        timeseries_panel("Spend by team", [Q("team:mlscope_cost_dollars_per_hour:sum", "{{team}}")], "currencyUSD",
                         neutral(), stack=True, min_val=0, legend_table=True,
                         description="$/hour per team tag; (untagged) is the rest, so the stack is the fleet total."),
        timeseries_panel("Spend by project", [Q("project:mlscope_cost_dollars_per_hour:sum", "{{project}}")],
                         "currencyUSD", neutral(), stack=True, min_val=0, legend_table=True),
        bargauge_panel("Month to date vs budget, by team", [
            Q("sort_desc(team:mlscope_cost_dollars:month_to_date / on (team) team:mlscope_budget_dollars_per_month:value)",
              "{{team}}", instant=True)], "percentunit", BUDGET_USED, w=8, min_val=0, max_val=1.2, decimals=0,
            description="Share of each team's monthly budget spent this month (alerts at 80 % and 100 %)."),
        bargauge_panel("Forecast month-end vs budget, by team", [
            Q("sort_desc(team:mlscope_cost_dollars:forecast_month_end / on (team) team:mlscope_budget_dollars_per_month:value)",
              "{{team}}", instant=True)], "percentunit", BUDGET_USED, w=8, min_val=0, max_val=1.2, decimals=0,
            description="Forecast month-end spend / budget (a ticket over 100 %)."),
        bargauge_panel("Month to date by team", [
            Q("sort_desc(team:mlscope_cost_dollars:month_to_date)", "{{team}}", instant=True)],
            "currencyUSD", neutral(), w=8, min_val=0, decimals=0),
        bargauge_panel("Month to date vs budget, by endpoint (tag)", [
            Q("sort_desc(endpoint:mlscope_cost_dollars:month_to_date"
              " / on (account, region, endpoint) endpoint:mlscope_budget_dollars_per_month:value)",
              "{{endpoint}} ({{account}})", instant=True)], "percentunit", BUDGET_USED, w=24, h=6, min_val=0,
            max_val=1.2, decimals=0,
            description="Endpoints tagged mlscope:budget-monthly-dollars: share of that budget spent this month."),
    ])


def _models() -> Section:
    """Self-hosted models: their share of host spend, idle spend and cost per request and per token."""
    return Section("Self-hosted models", [
        stat_panel("Models $/hour", ["sum(model:cost_dollars_per_hour:sum) or vector(0)"], "currencyUSD", neutral(),
                   w=6, decimals=2,
                   description="What the model servers' GPUs cost: each GPU's share of its host's price, split among "
                               "the processes on it by GPU memory. Part of Hosts $/hour, not in addition to it."),
        stat_panel("Models share of host spend", [
            "(sum(model:cost_dollars_per_hour:sum) or vector(0)) / fleet:node_cost_dollars_per_hour:sum"],
            "percentunit", neutral(), w=6, decimals=1,
            description="Models $/hour ÷ Hosts $/hour. The rest pays for GPUs no model server holds, other "
                        "processes and CPU-only hosts."),
        stat_panel("Idle models $/month", [f"({IDLE_MODELS} or vector(0)) * {HOURS_PER_MONTH}"], "currencyUSD",
                   steps(GREEN, (1, ORANGE)), w=6, decimals=0,
                   description=f"Models without a request in the last hour, × {HOURS_PER_MONTH} h: the same rule as "
                               "idle endpoints. It overlaps Idle $/month above (an idle model's GPUs are usually "
                               "under 10 % busy), so the two are not added."),
        bargauge_panel("Model $/hour by team", [Q(f"sort_desc({MODEL_BY_TEAM})", "{{team}}", instant=True)],
                       "currencyUSD", neutral(), w=6, min_val=0, decimals=2,
                       description="Each model's $/hour goes to its host's team label ((untagged) without one): "
                                   "already inside Spend by team."),
        table_panel(
            "Cost per model",
            [Q(f"sum by ({MODEL}) (model:cost_dollars_per_hour:sum)"),
             Q(f"sum by ({MODEL}) (model:cost_per_1k_requests_dollars:1h)"),
             Q(f"sum by ({MODEL}) (model:cost_per_1m_tokens_dollars:1h)"),
             Q(f"sum by ({MODEL}) (model:requests:rate1h)")],
            "none", neutral(), w=12, h=9, merge=True, hide=("Time",),
            rename={"Value #A": "$/hour", "Value #B": "$ per 1k requests", "Value #C": "$ per 1M tokens",
                    "Value #D": "req/s (1h)"},
            column_units={"$/hour": "currencyUSD", "$ per 1k requests": "currencyUSD",
                          "$ per 1M tokens": "currencyUSD", "req/s (1h)": "reqps"},
            sort_by="$/hour",
            description="Per model: $/hour, and over the last hour $/hour ÷ requests × 1000 and ÷ generated tokens "
                        "× 10⁶ (tokens: vLLM only). Empty cells: no request (idle) or no token count, never NaN."),
        timeseries_panel("$/hour by model", [Q("model:cost_dollars_per_hour:sum", "{{model}} ({{instance}})")],
                         "currencyUSD", neutral(), w=12, h=9, stack=True, min_val=0, legend_table=True),
    ])


def build():
    summary = Section(None, [
        stat_panel("Spend $/hour", ["fleet:mlscope_cost_dollars_per_hour:sum"], "currencyUSD", neutral(), decimals=2,
                   description="SageMaker endpoints + hosts."),
        stat_panel("Projected $/month", ["fleet:mlscope_cost_dollars_per_month:projected"], "currencyUSD", neutral(),
                   decimals=0, description=f"Current hourly spend × {HOURS_PER_MONTH} h."),
        stat_panel("SageMaker $/hour", ["fleet:sagemaker_cost_dollars_per_hour:sum"], "currencyUSD", neutral(),
                   decimals=2),
        stat_panel("Hosts $/hour", ["fleet:node_cost_dollars_per_hour:sum"], "currencyUSD", neutral(), decimals=2),
        stat_panel("Idle GPU $/hour", ["fleet:gpu_idle_cost_dollars_per_hour:sum or vector(0)"], "currencyUSD",
                   steps(GREEN, (0.01, ORANGE)), decimals=2,
                   description="Host cost shared over its GPUs, summed over GPUs under 10 % busy (10 m)."),
        stat_panel("Cost per 1k requests", ["fleet:sagemaker_cost_per_1k_requests_dollars:1h"], "currencyUSD",
                   neutral(), decimals=4, description="SageMaker hourly cost / requests per hour × 1000."),
    ])
    spend = Section("Spend", [
        timeseries_panel("$/hour by endpoint", [
            Q("endpoint:sagemaker_cost_dollars_per_hour:sum", "{{endpoint}}")], "currencyUSD", neutral(),
            stack=True, min_val=0, legend_table=True),
        timeseries_panel("$/hour by host", [
            Q("mlscope_host_hourly_cost_dollars", "{{instance}} ({{instance_type}})")], "currencyUSD", neutral(),
            stack=True, min_val=0, legend_table=True),
        bargauge_panel("Projected $/month by endpoint", [
            Q("sort_desc(endpoint:sagemaker_cost_dollars_per_month:projected)", "{{endpoint}}", instant=True)],
            "currencyUSD", neutral(), min_val=0, decimals=0),
        bargauge_panel("Projected $/month by host", [
            Q(f"sort_desc(mlscope_host_hourly_cost_dollars * {HOURS_PER_MONTH})", "{{instance}}", instant=True)],
            "currencyUSD", neutral(), min_val=0, decimals=0),
    ])
    efficiency = Section("Efficiency", [
        timeseries_panel("Cost per 1k requests trend", [
            Q("endpoint:sagemaker_cost_per_1k_requests_dollars:1h", "{{endpoint}}"),
            Q("fleet:sagemaker_cost_per_1k_requests_dollars:1h", "fleet"),
        ], "currencyUSD", neutral(), min_val=0, decimals=4, fill=0, legend_table=True,
            description="A rising line with flat traffic means capacity grew faster than demand."),
        timeseries_panel("Idle GPU cost", [
            Q("fleet:gpu_idle_cost_dollars_per_hour:sum or vector(0)", "idle GPUs $/hour"),
            Q("fleet:node_cost_dollars_per_hour:sum", "all hosts $/hour"),
        ], "currencyUSD", neutral(), min_val=0, fill=0),
        table_panel(
            "Over / under-provisioned variants",
            [Q(FINDING), Q(f"sum by ({VARIANT}) (sagemaker_variant_instances)"),
             Q(f"sum by ({VARIANT}) (sagemaker_variant_hourly_cost_dollars)")],
            "none", neutral(), w=14, h=9, merge=True, hide=("Time",),
            rename={"Value #A": "savings $/month", "Value #B": "instances", "Value #C": "$/hour"},
            column_units={"savings $/month": "currencyUSD", "$/hour": "currencyUSD"},
            sort_by="savings $/month",
            description="The rightsizer's finding per variant over its lookback (14 days by default) and what its "
                        "rank-1 option would save per month (negative: it costs more). Details on mlscope-rightsizing."),
        color_column(table_panel(
            "GPU cost vs use",
            [Q("instance_gpu:gpu_cost_dollars_per_hour:share"), Q("instance_gpu:gpu_utilization:avg_ratio_10m")],
            "none", neutral(), w=10, h=9, merge=True, hide=("Time", "uuid"),
            rename={"Value #A": "$/hour", "Value #B": "busy (10m)"},
            column_units={"$/hour": "currencyUSD", "busy (10m)": "percentunit"},
            sort_by="busy (10m)", sort_desc=False,
            description="Each GPU's share of its host's hourly cost next to how busy it was."),
            "busy (10m)", [(None, ORANGE), (0.1, GREEN)]),
        bargauge_panel("Cost per 1k requests by inference component", [
            Q("sort_desc(inference_component:sagemaker_cost_per_1k_requests_dollars:1h)",
              "{{endpoint}} / {{inference_component}}", instant=True)],
            "currencyUSD", neutral(), w=24, h=6, min_val=0, decimals=4,
            description="Each model's share of its endpoint's instance cost (reserved accelerators, else vCPUs, "
                        "× copies) / its requests, over the last hour."),
    ])
    monitoring = Section("What monitoring costs (CloudWatch API)", [
        stat_panel("CloudWatch $/month (projected)", ["fleet:mlscope_cloudwatch_cost_dollars_per_month:projected"],
                   "currencyUSD", high_bad(10, 100), w=6, h=8, decimals=2,
                   description="Metrics requested per second × 30 days × $0.01 / 1000."),
        stat_panel("CloudWatch $ in time range", [
            f"sum(increase(mlscope_cloudwatch_metrics_requested_total[$__range])) * {CLOUDWATCH_DOLLARS_PER_METRIC}"],
            "currencyUSD", neutral(), w=6, h=8, decimals=4, graph=False,
            description="$0.01 per 1,000 metrics requested by GetMetricData, or per 1,000 GetMetricStatistics "
                        "requests (one request brings several statistics of one metric)."),
        bargauge_panel("CloudWatch $/month by query kind", [
            Q(f"sort_desc(sum by (kind) (rate(mlscope_cloudwatch_metrics_requested_total[1h])) * 3600 * {HOURS_PER_MONTH}"
              f" * {CLOUDWATCH_DOLLARS_PER_METRIC})", "{{kind}}", instant=True)],
            "currencyUSD", neutral(), w=12, min_val=0, decimals=2,
            description="What the SageMaker exporter's CloudWatch queries cost (GetMetricData metrics and "
                        "GetMetricStatistics requests), by what they are for."),
        timeseries_panel("CloudWatch $/hour by region", [
            Q(f"sum by (region) (rate(mlscope_cloudwatch_metrics_requested_total[5m])) * 3600 "
              f"* {CLOUDWATCH_DOLLARS_PER_METRIC}", "{{region}}")],
            "currencyUSD", neutral(), w=24, min_val=0, decimals=4, stack=True),
    ])
    return build_dashboard(
        UID, TITLE, "Spend by team and project, month to date and forecast against budgets, spend by endpoint "
                    "and host, cost per 1k requests, idle and over-provisioned capacity, cost per self-hosted model, "
                    "and the CloudWatch bill of monitoring itself.",
        [summary, _allocation(), spend, efficiency, _models(), monitoring], extra_tags=["cost"])


__all__ = ["UID", "TITLE", "build"]

"""The Cost dashboard's own arithmetic (panel queries that are not a recording rule) on known series, evaluated
by Prometheus' engine through promtool: each figure equals a hand computation. Rule-backed figures are tested
in alerts/*.rules.test.yml."""

from __future__ import annotations

import subprocess

import pytest
import yaml

import helpers
from dashboards.queries import panel_targets, substitute

pytestmark = pytest.mark.integration

ACCOUNT = 'account="111111111111",region="us-east-1"'


def panel(title: str) -> str:
    exprs = [substitute(target["expr"], {}) for t, target in panel_targets("mlscope-cost") if t == title]
    assert len(exprs) == 1, f"{title}: {exprs}"
    return exprs[0]


def promtool_eval(tmp_path, series: dict[str, str], checks: list[tuple[str, str, list[tuple[str, float]]]]):
    """checks: (expr, eval_time, [(labels, value)]); runs `promtool test rules` with no rules."""
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "promql_expr_test": [{"expr": e, "eval_time": t, "exp_samples": [{"labels": l, "value": v} for l, v in exp]}
                             for e, t, exp in checks]}]}
    (tmp_path / "panels.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([helpers.require_binary("promtool"), "test", "rules", "panels.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_budget_and_untagged_panels(tmp_path):
    series = {
        'team:mlscope_cost_dollars_per_hour:sum{team="genai"}': "15.09x20",
        'team:mlscope_cost_dollars_per_hour:sum{team="risk"}': "2.25x20",
        'team:mlscope_cost_dollars_per_hour:sum{team="(untagged)"}': "4.115x20",
        'project:mlscope_cost_dollars_per_hour:sum{project="chat"}': "21.455x20",   # every project tagged
        'team:mlscope_cost_dollars:month_to_date{team="genai"}': "1487x20",
        'team:mlscope_cost_dollars:month_to_date{team="growth"}': "185.875x20",
        'team:mlscope_cost_dollars:month_to_date{team="search"}': "30x20",           # no budget: not shown
        'team:mlscope_cost_dollars:forecast_month_end{team="genai"}': "1488x20",
        'team:mlscope_cost_dollars:forecast_month_end{team="growth"}': "186x20",
        'team:mlscope_budget_dollars_per_month:value{team="genai"}': "20000x20",
        'team:mlscope_budget_dollars_per_month:value{team="growth"}': "150x20",
        'fleet:mlscope_cost_dollars:month_to_date': "24220x20",
        f'endpoint:mlscope_cost_dollars:month_to_date{{{ACCOUNT},endpoint="tiny"}}': "2.5x20",
        f'endpoint:mlscope_budget_dollars_per_month:value{{{ACCOUNT},endpoint="tiny"}}': "2x20",
        'fleet:mlscope_budget_dollars_per_month:value': "30000x20",
    }
    promtool_eval(tmp_path, series, [
        # 24,220 / 30,000
        (f"round(({panel('Fleet budget used')}) * 1e6)", "10m", [("{}", 807333)]),
        # 4.115 / (15.09 + 2.25 + 4.115) = 4.115 / 21.455 = 0.191797
        (f"round(({panel('Untagged share (team)')}) * 1e6)", "10m", [("{}", 191797)]),
        # nothing untagged: 0, not "No data"
        (panel("Untagged share (project)"), "10m", [("{}", 0)]),
        # genai 1,487 / 20,000 = 0.07435; growth 185.875 / 150 = 1.239167
        (f"round(({panel('Month to date vs budget, by team')}) * 1e6)", "10m",
         [('{team="genai"}', 74350), ('{team="growth"}', 1239167)]),
        # genai 1,488 / 20,000 = 0.0744; growth 186 / 150 = 1.24
        (f"round(({panel('Forecast month-end vs budget, by team')}) * 1e6)", "10m",
         [('{team="genai"}', 74400), ('{team="growth"}', 1240000)]),
        # 2.5 / 2
        (panel("Month to date vs budget, by endpoint (tag)"), "10m", [(f"{{{ACCOUNT},endpoint=\"tiny\"}}", 1.25)]),
    ])


def test_cloudwatch_cost_by_query_kind(tmp_path):
    # counts: 600 metrics a minute = 10/s x 3,600 x 730 h = 26.28M/month x $0.01/1,000 = $262.80;
    # percentiles: 60 a minute = 1/s: $26.28.
    series = {
        f'mlscope_cloudwatch_metrics_requested_total{{{ACCOUNT},kind="counts"}}': "0+600x70",
        f'mlscope_cloudwatch_metrics_requested_total{{{ACCOUNT},kind="percentiles"}}': "0+60x70",
    }
    promtool_eval(tmp_path, series, [
        (f"round(({panel('CloudWatch $/month by query kind')}) * 100)", "65m",
         [('{kind="counts"}', 26280), ('{kind="percentiles"}', 2628)]),
    ])

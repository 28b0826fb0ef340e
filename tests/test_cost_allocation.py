"""Cost allocation: host allocation labels (the real exporter over HTTP), `mlscope allocation` (the shipped rule
file is what the generator writes, bad files exit 2 with one line), and the calendar month in another time zone
(promtool on a generated file). The shipped rules' numbers are tested in alerts/allocation.rules.test.yml."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

import helpers
from mlscope import allocation
from mlscope.host import cost

ALLOCATION_RULES = helpers.ROOT / "alerts" / "allocation.rules.yml"


# ---------------------------------------------------------------- host exporter: allocation labels

def test_allocation_labels_parse_like_endpoint_tags():
    assert cost.allocation_labels({"team": "ml-platform", "cost-center": "cc-7"}) == \
        {"team": "ml-platform", "cost_center": "cc-7"}
    assert cost.allocation_labels("team=search, project=ranking") == {"team": "search", "project": "ranking"}
    assert cost.allocation_labels(None) == {}


@pytest.mark.parametrize("raw, message", [
    ("team", "KEY=VALUE"),
    ({"instance": "x"}, "'instance' cannot be a label name"),
    ({"instance_type": "x"}, "cannot be a label name"),
    ({"9lives": "x"}, "cannot be a label name"),
    ({"team": ""}, "non-empty"),
    ({"team": ["a", "b"]}, "non-empty string"),
    (["team"], "mapping"),
])
def test_bad_allocation_labels_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        cost.allocation_labels(raw)


@pytest.mark.integration
def test_host_cost_carries_the_configured_labels(tmp_path):
    config = tmp_path / "host.yml"
    config.write_text("hourly_cost_dollars: 2.5\ninstance_type: g5.xlarge\n"
                      "labels: {team: ml-platform, cost-center: cc-7}\n")
    proc, base = helpers.start_exporter("host-exporter", "--config", str(config))
    try:
        text = helpers.scrape(base)
    finally:
        proc.stop()
    series = helpers.samples(text)["mlscope_host_hourly_cost_dollars"]
    assert series == [({"instance_type": "g5.xlarge", "team": "ml-platform", "cost_center": "cc-7"}, 2.5)]
    family = "\n".join(line for line in text.splitlines() if "mlscope_host_hourly_cost_dollars" in line) + "\n"
    assert helpers.promtool_check_metrics(family).returncode == 0


def test_host_labels_flag_beats_the_file(tmp_path):
    config = tmp_path / "host.yml"
    config.write_text("hourly_cost_dollars: 1\nlabels: {team: from-file}\n")
    proc, base = helpers.start_exporter("host-exporter", "--config", str(config), "--labels", "team=from-flag")
    try:
        parsed = helpers.samples(helpers.scrape(base))
    finally:
        proc.stop()
    assert helpers.value(parsed, "mlscope_host_hourly_cost_dollars", team="from-flag") == 1


@pytest.mark.parametrize("value", ["team", "instance=x"])
def test_bad_host_labels_exit_2_with_one_line(value):
    result = helpers.run_cli("host-exporter", "--listen", f"127.0.0.1:{helpers.free_port()}", "--labels", value)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--labels" in lines[0], result.stderr


# ---------------------------------------------------------------- mlscope allocation

def test_shipped_rules_are_what_the_generator_writes():
    result = helpers.run_cli("allocation", "--config", "alerts/allocation.yml", "--output", str(ALLOCATION_RULES),
                             "--check")
    assert result.returncode == 0, result.stderr


def test_check_reports_a_stale_rule_file(tmp_path):
    stale = tmp_path / "allocation.rules.yml"
    stale.write_text("groups: []\n")
    result = helpers.run_cli("allocation", "--output", str(stale), "--check")
    assert result.returncode == 1 and "out of date" in result.stderr


@pytest.mark.integration
def test_generated_rules_follow_the_keys_and_budgets(tmp_path):
    cfg = allocation.parse({"allocation_keys": ["team", "business-unit"],
                            "budgets": {"business-unit": {"retail": 1200.5}}})
    groups = {g["name"]: g["rules"] for g in allocation.rule_groups(cfg)}
    records = [r["record"] for r in groups["mlscope-allocation"]]
    assert records == ["endpoint:sagemaker_budgeted_cost_dollars_per_hour:sum",
                       "team:mlscope_cost_dollars_per_hour:sum", "business_unit:mlscope_cost_dollars_per_hour:sum"]
    assert 'group_left (tag_business_unit)' in groups["mlscope-allocation"][2]["expr"]
    assert groups["mlscope-budgets"][1:] == [{"record": "business_unit:mlscope_budget_dollars_per_month:value",
                                              "expr": "vector(1200.5)", "labels": {"business_unit": "retail"}}]
    alerts = groups["mlscope-budget-alerts"]
    assert [(a["alert"], a["labels"]["allocation_key"]) for a in alerts] == [
        (name, key) for key in ("endpoint", "business_unit")
        for name in ("MLScopeBudgetNearlySpent", "MLScopeBudgetExceeded", "MLScopeBudgetForecastExceeded")]
    out = tmp_path / "rules.yml"
    out.write_text(allocation.render(cfg))
    result = subprocess.run([helpers.require_binary("promtool"), "check", "rules", str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_budgets_only_the_endpoint_tag_budgets():
    groups = {g["name"]: g["rules"] for g in allocation.rule_groups(allocation.parse({}))}
    assert [r["record"] for r in groups["mlscope-budgets"]] == ["endpoint:mlscope_budget_dollars_per_month:value"]
    assert {a["labels"]["allocation_key"] for a in groups["mlscope-budget-alerts"]} == {"endpoint"}


@pytest.mark.parametrize("text, message", [
    ("budgets: {team: {genai: -5}}", "budgets.team in"),
    ("budgets: {owner: {x: 5}}", "budgets.owner in .*not an allocation key"),
    ("budgets: {fleet: lots}", "budgets.fleet in .*must be a number"),
    ("utc_offset: '+02:20'", "utc_offset in .*whole hours or :30 or :45"),
    ("utc_offset: '+14:30'", "utc_offset in .*from -12:00 to \\+14:00"),
    ("utc_offset: +2:00", "utc_offset in .*got 120"),   # YAML 1.1 reads 2:00 as 120 (base 60)
    ("allocation_keys: [Team]", "allocation_keys in .*lower-case"),
    ("allocation_keys: [cost-center, cost_center]", "same label"),
    ("keys: [team]", "unknown setting 'keys'"),
    ("budgets: [1, 2]", "budgets in"),
    ("allocation_keys: [team", "not valid YAML"),
])
def test_bad_allocation_file_exits_2_with_one_line(tmp_path, text, message):
    path = tmp_path / "allocation.yml"
    path.write_text(text + "\n")
    result = helpers.run_cli("allocation", "--config", str(path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(message, lines[0]), lines[0]


def test_missing_allocation_file_exits_2(tmp_path):
    result = helpers.run_cli("allocation", "--config", str(tmp_path / "nope.yml"))
    assert result.returncode == 2 and "--config" in result.stderr and "cannot read" in result.stderr


MTD, FORECAST = "team:mlscope_cost_dollars:month_to_date", "team:mlscope_cost_dollars:forecast_month_end"


def assert_months(tmp_path, utc_offset: str, step: str, points: int, expected: list[tuple[str, str, float]]):
    """promtool: a host of team ml at $1/h from time 0 (1970-01-01 00:00 UTC), one sample and one rule evaluation
    per `step`; `expected` holds (rule, eval time, value)."""
    promtool = helpers.require_binary("promtool")
    (tmp_path / "allocation.rules.yml").write_text(
        allocation.render(allocation.parse({"allocation_keys": ["team"], "utc_offset": utc_offset})))
    test = {
        "rule_files": ["allocation.rules.yml"],
        "evaluation_interval": step,
        "group_eval_order": ["mlscope-allocation", "mlscope-allocation-month"],
        "tests": [{
            "interval": step,
            "input_series": [{"series": 'mlscope_host_hourly_cost_dollars{instance="n1",team="ml"}',
                              "values": f"1x{points}"}],
            "promql_expr_test": [{"expr": name, "eval_time": at,
                                  "exp_samples": [{"labels": f'{name}{{team="ml"}}', "value": value}]}
                                 for name, at, value in expected],
        }],
    }
    (tmp_path / "offset.test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", "offset.test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.integration
def test_months_follow_the_utc_offset(tmp_path):
    """At UTC+2 February starts at Jan 31 22:00 UTC (742h after promtool's time 0, 1970-01-01 00:00 UTC)."""
    assert_months(tmp_path, "+02:00", "1h", 746, [
        # local Jan 31 23:00: 741 hours of data in the local January, + 1: the first sample (local
        # Jan 1 02:00) stands for the hour that ends with it (docs/cost.md: a new series' first hour)
        (MTD, "741h", 742),
        (MTD, "742h", 0),            # local Feb 1 00:00: a new month
        (MTD, "745h", 3),
        (FORECAST, "745h", 672),     # local Feb 1 03:00: 3 + $1 x (28 days x 24 - 3) h left = 672
    ])


def test_half_hour_offsets_sum_half_hours_and_keep_whole_hour_offsets_unchanged():
    assert allocation.parse({"utc_offset": "+05:30"}).utc_offset_minutes == 330
    assert allocation.parse({"utc_offset": "-03:30"}).utc_offset_minutes == -210
    assert allocation.parse({"utc_offset": "+05:45"}).utc_offset_minutes == 345
    assert allocation.parse({"utc_offset": -5}).utc_offset_minutes == -300
    assert [allocation.step_seconds(m) for m in (0, 120, -300, 330, -210, 345)] == [3600] * 3 + [1800] * 2 + [900]
    text = allocation.render(allocation.parse({"allocation_keys": ["team"], "utc_offset": "+05:30"}))
    assert "calendar months at UTC+05:30" in text
    assert "[31d:30m]) * 0.5" in text and "[29m]" in text and "(time() + 19800) % 1800 / 3600" in text
    assert "[31d:1h]" not in allocation.render(allocation.parse({"utc_offset": "-03:30"}))
    assert "calendar months at UTC-03:30" in allocation.render(allocation.parse({"utc_offset": "-03:30"}))


@pytest.mark.integration
def test_months_follow_a_half_hour_utc_offset(tmp_path):
    """At UTC+05:30 February starts at Jan 31 18:30 UTC, 738.5 h after promtool's time 0 (1970-01-01 00:00 UTC,
    local 05:30): a step of an hour would put 18:00-19:00 UTC in one month; the rules sum half hours instead."""
    assert_months(tmp_path, "+05:30", "30m", 1500, [
        # local Jan 31 23:30: 1,477 half hours at $1/h (0 h .. 738 h; the first sample stands for the
        # half hour that ends with it, docs/cost.md)
        (MTD, "738h", 738.5),
        (MTD, "738h30m", 0),         # local Feb 1 00:00: a new month
        (MTD, "739h", 0.5),          # local 00:30: the half hour 00:00-00:30
        (MTD, "739h30m", 1),         # hourly steps would give 0: 18:00-19:00 UTC labelled January
        (MTD, "740h", 1.5),
        (FORECAST, "740h", 672),     # local Feb 1 01:30: 1.5 + $1/h x (28 days x 24 h - 1.5 h) left = 672
    ])

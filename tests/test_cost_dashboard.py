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


def panel_query(title: str, ref_id: str) -> str:
    (expr,) = [substitute(target["expr"], {}) for t, target in panel_targets("mlscope-cost")
               if t == title and target["refId"] == ref_id]
    return expr


def promtool_eval(tmp_path, series: dict[str, str], checks: list[tuple[str, str, list[tuple[str, float]]]],
                  rules: bool = False):
    """checks: (expr, eval_time, [(labels, value)]); runs `promtool test rules`, with the shipped
    alerts/*.rules.yml when `rules` (the series are then raw exporter series), else with no rules."""
    rule_files = [str(p) for p in sorted((helpers.ROOT / "alerts").glob("*.rules.yml"))] if rules else []
    test = {"rule_files": rule_files, "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "promql_expr_test": [{"expr": e, "eval_time": t, "exp_samples": [{"labels": l, "value": v} for l, v in exp]}
                             for e, t, exp in checks]}]}
    (tmp_path / "panels.test.yml").write_text(yaml.safe_dump(test, sort_keys=False, width=10_000))
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


# ------------------------------------------------------------------ self-hosted models

def model(name: str, job: str, instance: str) -> str:
    return f'job="{job}",instance="{instance}",model="{name}"'


LLAMA, RESNET, QUIET = model("llama", "vllm", "gpu-1"), model("resnet", "triton", "gpu-1"), model("quiet", "vllm", "gpu-2")


def test_model_cost_panels(tmp_path):
    series = {
        # gpu-1 ($8/h, team genai) runs llama ($3/h) and resnet ($4/h); gpu-2 ($4/h, no team) runs quiet ($2/h)
        'mlscope_host_hourly_cost_dollars{job="host",instance="gpu-1",team="genai"}': "8x70",
        'mlscope_host_hourly_cost_dollars{job="host",instance="gpu-2"}': "4x70",
        'fleet:node_cost_dollars_per_hour:sum': "12x70",
        f"model:cost_dollars_per_hour:sum{{{LLAMA}}}": "3x70",
        f"model:cost_dollars_per_hour:sum{{{RESNET}}}": "4x70",
        f"model:cost_dollars_per_hour:sum{{{QUIET}}}": "2x70",
        f"model:requests:rate1h{{{LLAMA}}}": "1x70",
        f"model:requests:rate1h{{{RESNET}}}": "2x70",
        f"model:requests:rate1h{{{QUIET}}}": "0x70",                 # no request in the hour: idle
        # as the rules record them: $3 / 3,600 requests x 1,000; $4 / 7,200 x 1,000; $3 / 72,000 tokens x 10^6
        f"model:cost_per_1k_requests_dollars:1h{{{LLAMA}}}": "0.8333333333333334x70",
        f"model:cost_per_1k_requests_dollars:1h{{{RESNET}}}": "0.5555555555555556x70",
        f"model:cost_per_1m_tokens_dollars:1h{{{LLAMA}}}": "41.666666666666664x70",
    }
    promtool_eval(tmp_path, series, [
        (panel("Models $/hour"), "65m", [("{}", 9)]),                              # 3 + 4 + 2
        (f"round(({panel('Models share of host spend')}) * 1e6)", "65m", [("{}", 750000)]),   # 9 / 12
        (panel("Idle models $/month"), "65m", [("{}", 1460)]),                     # quiet: $2/h x 730 h
        (panel("Model $/hour by team"), "65m", [('{team="genai"}', 7), ('{team="(untagged)"}', 2)]),
        (panel_query("Cost per model", "A"), "65m", [(f"{{{LLAMA}}}", 3), (f"{{{RESNET}}}", 4), (f"{{{QUIET}}}", 2)]),
        # the idle model has no cost per request or token: absent (an empty cell), never NaN or Inf
        (f"round(({panel_query('Cost per model', 'B')}) * 1e4)", "65m",
         [(f"{{{LLAMA}}}", 8333), (f"{{{RESNET}}}", 5556)]),
        (f"round(({panel_query('Cost per model', 'C')}) * 1e4)", "65m", [(f"{{{LLAMA}}}", 416667)]),
        (panel_query("Cost per model", "D"), "65m", [(f"{{{LLAMA}}}", 1), (f"{{{RESNET}}}", 2), (f"{{{QUIET}}}", 0)]),
    ])


def test_model_stats_without_models_read_zero(tmp_path):
    promtool_eval(tmp_path, {"fleet:node_cost_dollars_per_hour:sum": "12x10"}, [
        (panel("Models $/hour"), "5m", [("{}", 0)]),
        (panel("Models share of host spend"), "5m", [("{}", 0)]),
        (panel("Idle models $/month"), "5m", [("{}", 0)]),
    ])


def test_model_spend_is_inside_host_spend_not_added(tmp_path):
    """Raw exporter and server series through the shipped rules: the fleet total, the hosts' total and the
    team split each count the model servers' GPUs once (inside their host), while the model panels show them."""
    gpu = 'job="gpu",instance="gpu-1",gpu="{0}",uuid="GPU-{0}"'
    series = {
        # a $8/h GPU host of team genai with 2 GPUs ($4/h each) and an untagged $0.5/h CPU host
        'mlscope_host_hourly_cost_dollars{job="host",instance="gpu-1",instance_type="g5.12xlarge",team="genai"}': "8x70",
        'mlscope_host_hourly_cost_dollars{job="host",instance="cpu-1",instance_type="m5.large"}': "0.5x70",
        **{f'gpu_info{{{gpu.format(i)},model="NVIDIA A10G",driver_version="550",pci_bus_id="0000:00:1{i}.0"}}': "1x70"
           for i in (0, 1)},
        # GPU 0: vLLM 30 GB + a notebook 10 GB: vLLM pays 3/4 of $4; GPU 1: Triton alone, $4
        f'gpu_process_memory_used_bytes{{{gpu.format(0)},pid="100",process="vllm",container=""}}': "30e9x70",
        f'gpu_process_memory_used_bytes{{{gpu.format(0)},pid="200",process="jupyter",container=""}}': "10e9x70",
        f'gpu_process_memory_used_bytes{{{gpu.format(1)},pid="300",process="tritonserver",container=""}}': "40e9x70",
        'up{job="vllm",instance="gpu-1",process="vllm"}': "1x70",
        'up{job="triton",instance="gpu-1",process="tritonserver"}': "1x70",
        # vLLM: 1 request/s and 20 generated tokens/s; Triton: no request at all (idle)
        'vllm:request_success_total{job="vllm",instance="gpu-1",model_name="llama",model="llama",finished_reason="stop"}':
            "0+60x70",
        'vllm:generation_tokens_total{job="vllm",instance="gpu-1",model_name="llama",model="llama"}': "0+1200x70",
        'nv_inference_request_success{job="triton",instance="gpu-1",model="resnet",version="1"}': "0x70",
    }
    llama, resnet = model("llama", "vllm", "gpu-1"), model("resnet", "triton", "gpu-1")
    promtool_eval(tmp_path, series, [
        (f"sum({panel('Spend $/hour')})", "65m", [("{}", 8.5)]),                  # 8 + 0.5: models not added
        (f"sum({panel('Hosts $/hour')})", "65m", [("{}", 8.5)]),
        ("sum(team:mlscope_cost_dollars_per_hour:sum)", "65m", [("{}", 8.5)]),    # genai 8 + (untagged) 0.5
        (panel("Models $/hour"), "65m", [("{}", 7)]),                             # vLLM 3 + Triton 4
        (f"round(({panel('Models share of host spend')}) * 1e6)", "65m", [("{}", 823529)]),   # 7 / 8.5
        (panel("Idle models $/month"), "65m", [("{}", 2920)]),                    # Triton $4/h x 730 h
        (panel("Model $/hour by team"), "65m", [('{team="genai"}', 7)]),          # ⊂ genai's $8/h
        # llama: $3/h / 3,600 requests x 1,000 = $0.8333; / 72,000 tokens x 10^6 = $41.6667
        (f"round(({panel_query('Cost per model', 'B')}) * 1e4)", "65m", [(f"{{{llama}}}", 8333)]),
        (f"round(({panel_query('Cost per model', 'C')}) * 1e4)", "65m", [(f"{{{llama}}}", 416667)]),
        (panel_query("Cost per model", "D"), "65m", [(f"{{{llama}}}", 1), (f"{{{resnet}}}", 0)]),
    ], rules=True)

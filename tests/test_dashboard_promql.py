"""The dashboards' own PromQL (expressions that are not recording rules) against known series, with
promtool: every expected number below is worked out by hand in the comment beside it.

The expressions are read from the generated dashboards (panel title + refId), so what is tested is
what Grafana runs. Recording-rule series are given as input, so these tests pin the dashboards'
arithmetic, not the rules' (alerts/*.rules.test.yml do that).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from helpers import ROOT, require_binary

sys.path.insert(0, str(ROOT))

import dashboards  # noqa: E402
from dashboards import promql  # noqa: E402
from dashboards.queries import substitute  # noqa: E402

pytestmark = pytest.mark.integration

ALL = {"region": ".*", "endpoint": ".*", "variant": ".*", "instance": ".*", "gpu": ".*",
       "__range": "30m", "__rate_interval": "5m"}


def expr(uid: str, title: str, ref_id: str = "A", variables: dict | None = None) -> str:
    """The query `ref_id` of panel `title` on dashboard `uid`, template variables filled in."""
    for panel in dashboards.load(uid)["panels"]:
        if panel.get("title") == title:
            for target in panel["targets"]:
                if target["refId"] == ref_id:
                    return substitute(target["expr"], {**ALL, **(variables or {})})
    raise KeyError(f"{uid}: no panel {title!r} with query {ref_id}")


def promtool(tmp_path, series: dict[str, str], cases: list[tuple[str, str, list[tuple[str, float]]]],
             rules: bool = False):
    """Run `promtool test rules` on `series` (selector -> promtool values) and `cases`
    (expr, eval time, [(labels, value), ...]); fail with promtool's output unless all pass.
    `rules`: evaluate the shipped alerts/*.rules.yml too (the input is then raw exporter series)."""
    test = {
        "rule_files": [str(p) for p in sorted((ROOT / "alerts").glob("*.rules.yml"))] if rules else [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "promql_expr_test": [{"expr": e, "eval_time": t,
                                  "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
                                 for e, t, samples in cases],
        }],
    }
    path = tmp_path / "dashboards.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, width=10_000))
    result = subprocess.run([require_binary("promtool"), "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ the wall

# Eight endpoints; at 40m (time() = 2400) each shows one problem, or none.
#   endpoint     burn 1h  p95 / p99 (s)  objective  data age  status, instances   health
#   e-ok           0.5      0.3 / 0.4       1 s       120 s    InService, 2        OK
#   e-burn        20        0.2 / 0.2       1 s       120 s    InService, 1        FAILING (burn >= 14.4)
#   e-slow         0        0.4 / 0.45      0.5 s     120 s    InService, 1        AT RISK (p99 ÷ obj 0.9 >= 0.8)
#   e-stale        0        0.2 / 0.2       1 s      1000 s    InService, 1        AT RISK (age >= 900)
#   e-down         0        0.2 / 0.2       1 s       120 s    OutOfService, 1     FAILING (not serving)
#   e-noinst       0        0.2 / 0.2       1 s       120 s    InService, 0        FAILING (no running instance)
#   e-updating     0        0.2 / 0.2       1 s       120 s    Updating, 1         AT RISK (serving, changing)
#   e-west         0.9      0.2 / 0.2       1 s       120 s    InService, 1        OK (us-west-2; burn < 1)
ENDPOINTS = {
    "e-ok": (0.5, 0.3, 0.4, 1, 120, "InService", 2),
    "e-burn": (20, 0.2, 0.2, 1, 120, "InService", 1),
    "e-slow": (0, 0.4, 0.45, 0.5, 120, "InService", 1),
    "e-stale": (0, 0.2, 0.2, 1, 1000, "InService", 1),
    "e-down": (0, 0.2, 0.2, 1, 120, "OutOfService", 1),
    "e-noinst": (0, 0.2, 0.2, 1, 120, "InService", 0),
    "e-updating": (0, 0.2, 0.2, 1, 120, "Updating", 1),
    "e-west": (0.9, 0.2, 0.2, 1, 120, "InService", 1),
}
SERVING = ("InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed")


def labels(endpoint: str) -> str:
    region = "us-west-2" if endpoint == "e-west" else "us-east-1"
    return f'account="111122223333",region="{region}",endpoint="{endpoint}"'


def endpoint_series() -> dict[str, str]:
    series = {f'mlscope:config:sagemaker_serving_status{{status="{s}"}}': "1x40" for s in SERVING}
    for name, (burn, p95, p99, objective, age, status, instances) in ENDPOINTS.items():
        ep = labels(name)
        series[f"endpoint:sagemaker_error_budget_burn_rate:1h{{{ep}}}"] = f"{burn}x40"
        series[f"endpoint:sagemaker_model_latency_seconds:p95_max{{{ep}}}"] = f"{p95}x40"
        series[f"endpoint:sagemaker_model_latency_seconds:p99_max{{{ep}}}"] = f"{p99}x40"
        series[f"endpoint:sagemaker_latency_objective_seconds:value{{{ep}}}"] = f"{objective}x40"
        # two variants: the stalest one counts (the other is 60 s fresher)
        series[f'sagemaker_data_timestamp_seconds{{{ep},variant="a",job="sagemaker"}}'] = f"{2400 - age}x40"
        series[f'sagemaker_data_timestamp_seconds{{{ep},variant="b",job="sagemaker"}}'] = f"{2460 - age}x40"
        series[f'sagemaker_endpoint_info{{{ep},status="{status}",job="sagemaker",tag_team="ml"}}'] = "1x40"
        series[f'sagemaker_variant_instances{{{ep},variant="a",job="sagemaker"}}'] = f"{instances}x40"
    return series


def promql_text(expression: str) -> str:
    """`expression` with its line breaks and indentation (a rule file's layout) folded away."""
    return re.sub(r" \)", ")", re.sub(r"\( ", "(", re.sub(r"\s+", " ", expression.strip())))


def health_rule() -> str:
    return next(rule["expr"] for group in yaml.safe_load((ROOT / "alerts" / "sagemaker.rules.yml").read_text())["groups"]
                for rule in group["rules"] if rule.get("record") == "endpoint:sagemaker_health:state")


def test_the_wall_reads_the_recorded_health_and_the_rule_is_promql_health():
    """The thresholds live in dashboards/promql.py only: the rule is health() as text, the panel reads the rule."""
    assert promql_text(health_rule()) == promql_text(promql.health())
    assert expr("mlscope-wall", "Endpoint health", "A") == "endpoint:sagemaker_health:state{}"


def test_wall_health_grid(tmp_path):
    health = {"e-ok": 0, "e-burn": 2, "e-slow": 1, "e-stale": 1, "e-down": 2, "e-noinst": 2, "e-updating": 1,
              "e-west": 0}
    p99_ratio = {name: p99 / objective for name, (_, _, p99, objective, *_rest) in ENDPOINTS.items()}
    promtool(tmp_path, endpoint_series(), [
        # column A reads endpoint:sagemaker_health:state: its rule's expression over the same series
        (health_rule(), "40m", [(f"{{{labels(n)}}}", v) for n, v in health.items()]),
        (expr("mlscope-wall", "Endpoint health", "B"), "40m",
         [(f"{{{labels(n)}}}", burn) for n, (burn, *_rest) in ENDPOINTS.items()]),
        # p99 ÷ objective: 0.4/1, 0.2/1, 0.45/0.5 = 0.9, ...
        (expr("mlscope-wall", "Endpoint health", "C"), "40m",
         [(f"{{{labels(n)}}}", v) for n, v in p99_ratio.items()]),
        # data age: 2400 - (2400 - age) for the stalest variant
        (expr("mlscope-wall", "Endpoint health", "D"), "40m",
         [(f"{{{labels(n)}}}", ENDPOINTS[n][4]) for n in ENDPOINTS]),
    ])


def test_endpoint_status_timeline(tmp_path):
    # 1 in service, 2 serving while changing, 3 serving status but no running instance, 4 not serving
    status = {"e-ok": 1, "e-burn": 1, "e-slow": 1, "e-stale": 1, "e-down": 4, "e-noinst": 3, "e-updating": 2,
              "e-west": 1}
    east = {n: v for n, v in status.items() if n != "e-west"}
    promtool(tmp_path, endpoint_series(), [
        (expr("mlscope-endpoints", "Status"), "40m", [(f"{{{labels(n)}}}", v) for n, v in status.items()]),
        (expr("mlscope-endpoints", "Status", variables={"region": "us-east-1"}), "40m",
         [(f"{{{labels(n)}}}", v) for n, v in east.items()]),
    ])


def test_wall_health_and_status_with_the_shipped_rules(tmp_path):
    """The same panels over raw exporter series and the real recording rules: the labels join."""
    def endpoint(name: str, status: str, instances: int, requests: int, errors: int) -> dict[str, str]:
        ep = f'account="1",region="r",endpoint="{name}",job="sagemaker",instance="x"'
        return {
            f'sagemaker_endpoint_info{{{ep},status="{status}"}}': "1x40",
            f'sagemaker_variant_instances{{{ep},variant="a"}}': f"{instances}x40",
            f'sagemaker_invocations_total{{{ep},variant="a"}}': f"0+{requests}x40",
            f'sagemaker_invocation_5xx_errors_total{{{ep},variant="a"}}': f"0+{errors}x40",
            f'sagemaker_model_latency_seconds{{{ep},variant="a",quantile="0.99"}}': "0.5x40",
            f'sagemaker_data_timestamp_seconds{{{ep},variant="a"}}': "-120+60x40",    # always 2 minutes old
        }
    series = {**endpoint("e-ok", "InService", 1, 600, 0),
              # 10 req/s, 10 % 5xx on a 99.9 % objective: burn rate 0.1 / 0.001 = 100 >= 14.4
              **endpoint("e-burn", "InService", 1, 600, 60),
              **endpoint("e-dead", "OutOfService", 1, 0, 0),
              **endpoint("e-idle", "InService", 0, 0, 0)}
    out = 'account="1",region="r",endpoint="{}"'
    promtool(tmp_path, series, [
        (expr("mlscope-wall", "Endpoint health", "A"), "30m",
         [(f"endpoint:sagemaker_health:state{{{out.format(n)}}}", v)
          for n, v in {"e-ok": 0, "e-burn": 2, "e-dead": 2, "e-idle": 2}.items()]),
        (expr("mlscope-endpoints", "Status"), "30m",
         [(f"{{{out.format(n)}}}", v) for n, v in {"e-ok": 1, "e-burn": 1, "e-dead": 4, "e-idle": 3}.items()]),
        # p99 0.5 s against the default 1 s objective
        (expr("mlscope-wall", "Endpoint health", "C"), "30m",
         [(f"{{{out.format(n)}}}", 0.5) for n in ("e-ok", "e-burn", "e-dead", "e-idle")]),
    ], rules=True)


def test_wall_stats_show_one_value_each(tmp_path):
    series = endpoint_series()
    series.update({
        # what `mlscope alertmanager-exporter` serves (tests/test_alertmanager_exporter.py: from a real Alertmanager)
        'mlscope_alertmanager_alerts{severity="page",state="notifying"}': "2x40",
        'mlscope_alertmanager_alerts{severity="page",state="silenced"}': "1x40",
        'mlscope_alertmanager_alerts{severity="page",state="inhibited"}': "3x40",
        'mlscope_alertmanager_alerts{severity="ticket",state="notifying"}': "4x40",
        'mlscope_rightsizing_estimated_monthly_savings_dollars{variant="a"}': "120x40",
        'mlscope_rightsizing_estimated_monthly_savings_dollars{variant="b"}': "-30x40",   # costs more: 0
        'mlscope_rightsizing_estimated_monthly_savings_dollars{variant="c"}': "50x40",
    })
    promtool(tmp_path, series, [
        (expr("mlscope-wall", "Paging"), "40m", [("{}", 2)]),                 # pages notifying, not tickets
        (expr("mlscope-wall", "Pages held back", "A"), "40m", [("{}", 1)]),   # silenced
        (expr("mlscope-wall", "Pages held back", "B"), "40m", [("{}", 3)]),   # inhibited
        (expr("mlscope-wall", "Rightsizing savings"), "40m", [("{}", 170)]),  # 120 + 0 + 50
        (expr("mlscope-wall", "Latency ÷ objective", "A"), "40m", [("{}", 0.8)]),   # e-slow p95: 0.4 / 0.5
        (expr("mlscope-wall", "Latency ÷ objective", "B"), "40m", [("{}", 0.9)]),   # e-slow p99: 0.45 / 0.5
    ])


# ------------------------------------------------------------------ the wall: self-hosted models

# Model series as the rules record them (alerts/models.rules.yml); at 40m:
#   model       job, instance       req/s  errors 1h  slow 1h  mean (s)  target            health
#   m-ok        vllm, h1              2     0.0005    0.005     -        up                OK (burns 0.5, 0.5)
#   m-errors    vllm, h2              1     0.02      0         -        up                FAILING (error burn 20)
#   m-slow      model-http, h3        1     0         0.02      -        up (names model)  AT RISK (latency burn 2)
#   m-mean      triton, h1            3     0         -         0.9      up                AT RISK (0.9 s ÷ 1 s)
#   m-idle      triton, h4            0     0         -         -        up                IDLE
#   m-failed    vllm, h5              0     0.5       0         -        up                FAILING (idle now, burned)
#   m-dead      vllm, h6           series end at 20m            -        down from 21m     DOWN
#   sentiment   model-http, h7     never any series             -        down (names it)   DOWN
#   m-gone      vllm, h8           series end at 20m            -        target removed    (no row)
MODELS = {
    "m-ok": ("vllm", "h1", 2, 0.0005, 0.005, None),
    "m-errors": ("vllm", "h2", 1, 0.02, 0, None),
    "m-slow": ("model-http", "h3", 1, 0, 0.02, None),
    "m-mean": ("triton", "h1", 3, 0, None, 0.9),
    "m-idle": ("triton", "h4", 0, 0, None, None),
    "m-failed": ("vllm", "h5", 0, 0.5, 0, None),
}


def model(name: str, job: str, instance: str) -> str:
    return f'job="{job}",instance="{instance}",model="{name}"'


def model_series() -> dict[str, str]:
    series = {}
    for name, (job, instance, rate, errors, slow, mean) in MODELS.items():
        m = model(name, job, instance)
        series[f"model:requests:rate5m{{{m}}}"] = f"{rate}x40"
        series[f"model:errors:ratio_rate1h{{{m}}}"] = f"{errors}x40"
        if slow is not None:
            series[f"model:latency_slo_violations:ratio_rate1h{{{m}}}"] = f"{slow}x40"
        if mean is not None:
            series[f"model:latency_seconds:mean5m{{{m}}}"] = f"{mean}x40"
        target = f'job="{job}",instance="{instance}"' + (f',model="{name}"' if job == "model-http" else "")
        series[f"up{{{target}}}"] = "1x40"
    for name, instance in (("m-dead", "h6"), ("m-gone", "h8")):
        series[f"model:requests:rate5m{{{model(name, 'vllm', instance)}}}"] = "1x20"
    series['up{job="vllm",instance="h6",process="vllm"}'] = "1x20 0x20"
    series['up{job="vllm",instance="h8",process="vllm"}'] = "1x20"
    series['up{job="model-http",instance="h7",model="sentiment"}'] = "0x40"
    series['up{job="host",instance="h6"}'] = "1x40"          # the machine is up; its model server is not
    return series


def test_wall_model_health_grid(tmp_path):
    health = {"m-ok": 0, "m-errors": 2, "m-slow": 1, "m-mean": 1, "m-idle": -1, "m-failed": 2}
    rows = [(f"{{{model(n, MODELS[n][0], MODELS[n][1])}}}", v) for n, v in health.items()]
    rows += [(f"{{{model('m-dead', 'vllm', 'h6')}}}", 3), (f"{{{model('sentiment', 'model-http', 'h7')}}}", 3)]
    promtool(tmp_path, model_series(), [
        (expr("mlscope-wall", "Model health", "A"), "40m", rows),
        (expr("mlscope-wall", "Model health", "B"), "40m",
         [(f"{{{model(n, job, i)}}}", rate) for n, (job, i, rate, *_rest) in MODELS.items()]),
        # errors burn = ratio ÷ 0.001: 0.0005 -> 0.5, 0.02 -> 20, 0.5 -> 500
        (f'round(({expr("mlscope-wall", "Model health", "C")}) * 1000)', "40m",
         [(f"{{{model(n, job, i)}}}", round(errors / 0.001 * 1000))
          for n, (job, i, _, errors, *_rest) in MODELS.items()]),
        # latency burn = slow share ÷ 0.01: 0.005 -> 0.5, 0.02 -> 2; none for Triton (no histogram)
        (f'round(({expr("mlscope-wall", "Model health", "D")}) * 1000)', "40m",
         [(f"{{{model(n, job, i)}}}", round(slow / 0.01 * 1000))
          for n, (job, i, _, _e, slow, _m) in MODELS.items() if slow is not None]),
        # before m-dead's server died it was serving (OK); m-gone too, until its target was removed
        (expr("mlscope-wall", "Model health", "A"), "15m",
         rows[:-2] + [(f"{{{model('m-dead', 'vllm', 'h6')}}}", 0), (f"{{{model('m-gone', 'vllm', 'h8')}}}", 0),
                      (f"{{{model('sentiment', 'model-http', 'h7')}}}", 3)]),
    ])


def test_wall_model_health_with_the_shipped_rules(tmp_path):
    """Raw server series through the real recording rules: a server that dies, one that restarts, an idle one."""
    llama = 'job="vllm",instance="gpu-node-1",model_name="llama",model="llama"'
    resnet = 'job="triton",instance="gpu-node-2",model="resnet",version="1"'
    quiet = 'job="vllm",instance="gpu-node-3",model_name="quiet",model="quiet"'
    series = {
        # vLLM: 1 request/s, all within 1 s to the first token, until the server dies at 30m
        f'vllm:request_success_total{{{llama},finished_reason="stop"}}': "0+60x30",
        f'vllm:time_to_first_token_seconds_bucket{{{llama},le="1.0"}}': "0+60x30",
        f'vllm:time_to_first_token_seconds_bucket{{{llama},le="+Inf"}}': "0+60x30",
        f"vllm:time_to_first_token_seconds_count{{{llama}}}": "0+60x30",
        'up{job="vllm",instance="gpu-node-1",process="vllm"}': "1x30 0x20",
        # Triton: 1 request/s at 50 ms (3 s of handling a minute); the server restarts at 21m (one scrape
        # fails, its counters start again from 0)
        f"nv_inference_request_success{{{resnet}}}": "0+60x20 _ 0+60x29",
        f"nv_inference_request_duration_us{{{resnet}}}": "0+3e6x20 _ 0+3e6x29",
        'up{job="triton",instance="gpu-node-2",process="tritonserver"}': "1x20 0 1x29",
        # vLLM with no request at all: counters flat
        f'vllm:request_success_total{{{quiet},finished_reason="stop"}}': "0x50",
        f'vllm:time_to_first_token_seconds_bucket{{{quiet},le="1.0"}}': "0x50",
        f'vllm:time_to_first_token_seconds_bucket{{{quiet},le="+Inf"}}': "0x50",
        f"vllm:time_to_first_token_seconds_count{{{quiet}}}": "0x50",
        'up{job="vllm",instance="gpu-node-3",process="vllm"}': "1x50",
    }
    ok_llama = '{job="vllm",instance="gpu-node-1",model="llama"}'
    ok_resnet = '{job="triton",instance="gpu-node-2",model="resnet"}'
    idle = '{job="vllm",instance="gpu-node-3",model="quiet"}'
    health = expr("mlscope-wall", "Model health", "A")
    promtool(tmp_path, series, [
        (health, "20m", [(ok_llama, 0), (ok_resnet, 0), (idle, -1)]),
        (health, "21m", [(ok_llama, 0), (ok_resnet, 3), (idle, -1)]),     # restarting: down for one scrape
        # restarted: the counter reset is no error, and Triton's mean latency (50 ms ÷ 1 s) keeps it OK
        (health, "25m", [(ok_llama, 0), (ok_resnet, 0), (idle, -1)]),
        (health, "45m", [(ok_llama, 3), (ok_resnet, 0), (idle, -1)]),     # dead for 15 minutes: still DOWN
        # req/s: the idle model shows 0 (not empty, not NaN); the restarted server its full rate again
        (expr("mlscope-wall", "Model health", "B"), "30m", [(ok_llama, 1), (ok_resnet, 1), (idle, 0)]),
    ], rules=True)


# ------------------------------------------------------------------ endpoints


def test_budget_exhausted_in(tmp_path):
    ep = 'account="1",region="r",endpoint="{}"'
    promtool(tmp_path, {
        # half the budget left, burning at 2x over the last day: 0.5 × 30 d / 2 = 7.5 d = 648000 s
        f"endpoint:sagemaker_error_budget_remaining:ratio_30d{{{ep.format('half')}}}": "0.5x10",
        f"endpoint:sagemaker_error_budget_burn_rate:1d{{{ep.format('half')}}}": "2x10",
        # overspent (-10 %) and still burning: 0
        f"endpoint:sagemaker_error_budget_remaining:ratio_30d{{{ep.format('spent')}}}": "-0.1x10",
        f"endpoint:sagemaker_error_budget_burn_rate:1d{{{ep.format('spent')}}}": "3x10",
        # not burning: no value ("not burning")
        f"endpoint:sagemaker_error_budget_remaining:ratio_30d{{{ep.format('idle')}}}": "0.8x10",
        f"endpoint:sagemaker_error_budget_burn_rate:1d{{{ep.format('idle')}}}": "0x10",
    }, [(expr("mlscope-endpoints", "Budget exhausted in"), "5m",
         [(f"{{{ep.format('half')}}}", 648000), (f"{{{ep.format('spent')}}}", 0)])])


def test_worst_endpoints_are_the_ten_with_least_budget(tmp_path):
    ep = 'account="1",region="r",endpoint="e{:02d}"'
    series = {}
    for i in range(12):        # e00 has 0 % budget left ... e11 has 110 %: e10 and e11 are not among the worst 10
        series[f"endpoint:sagemaker_error_budget_remaining:ratio_30d{{{ep.format(i)}}}"] = f"{i / 10}x10"
        series[f"endpoint:sagemaker_5xx_errors:ratio_rate1h{{{ep.format(i)}}}"] = f"{i / 1000}x10"
    promtool(tmp_path, series, [
        (expr("mlscope-endpoints", "Worst 10 endpoints", "E"), "5m",
         [(f"{{{ep.format(i)}}}", i / 10) for i in range(10)]),
        (expr("mlscope-endpoints", "Worst 10 endpoints", "C"), "5m",
         [(f"{{{ep.format(i)}}}", i / 1000) for i in range(10)]),
    ])


def test_throughput_per_instance(tmp_path):
    v = 'account="1",region="r",endpoint="e",variant="{}"'
    promtool(tmp_path, {
        f"variant:sagemaker_requests:rate5m{{{v.format('a')}}}": "30x10",
        f'sagemaker_variant_instances{{{v.format("a")},job="sagemaker",instance="x"}}': "3x10",
        f"variant:sagemaker_requests:rate5m{{{v.format('idle')}}}": "0x10",       # scaled to zero: no value
        f'sagemaker_variant_instances{{{v.format("idle")},job="sagemaker",instance="x"}}': "0x10",
    }, [(expr("mlscope-endpoints", "Throughput per instance"), "5m",
         [('{account="1",region="r",endpoint="e",variant="a"}', 10)])])    # 30 req/s ÷ 3 instances


# ------------------------------------------------------------------ GPUs


def test_xid_stat_counts_first_xids_and_restarts_and_ignores_scrape_gaps(tmp_path):
    g = 'instance="h",uuid="GPU-{0}",gpu="{0}",xid="{1}"'
    promtool(tmp_path, {
        # GPU 0: its first Xid (79) at 40m, inside the last 30 minutes: the series starts at 1 -> 1
        f"gpu_xid_errors_total{{{g.format(0, 79)}}}": "_x39 1x20",
        # GPU 1: Xid 13 twice before the range, once more at 50m -> 1
        f"gpu_xid_errors_total{{{g.format(1, 13)}}}": "2x49 3x10",
        # GPU 2: an old Xid 94 (5 of them), then no scrape from 25m to 36m, then 5 again -> 0
        f"gpu_xid_errors_total{{{g.format(2, 94)}}}": "5x24 _x11 5x23",
        # GPU 3: 4 old Xid 31, the exporter restarts (no series 36m-44m), a new Xid 31 at 45m: 1 -> 1
        f"gpu_xid_errors_total{{{g.format(3, 31)}}}": "4x35 _x9 1x15",
    }, [(expr("mlscope-gpus", "Xid errors"), "60m", [("{}", 3)])])


def test_xid_stat_is_zero_without_xids(tmp_path):
    promtool(tmp_path, {'gpu_up{instance="h",gpu="0"}': "1x10"},
             [(expr("mlscope-gpus", "Xid errors"), "10m", [("{}", 0)])])


def test_only_harmful_throttle_reasons_are_red(tmp_path):
    g = 'instance="h",uuid="GPU-0",gpu="0",reason="{}"'
    series = {f'mlscope:config:gpu_throttle_reason_harmful{{reason="{r}"}}': "1x10"
              for r in ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")}
    series.update({f"gpu_clock_throttle_active{{{g.format(r)}}}": f"{v}x10" for r, v in
                   {"hw_slowdown": 1, "hw_thermal_slowdown": 0, "sw_power_cap": 1, "gpu_idle": 0,
                    "applications_clocks_setting": 1}.items()})
    out = 'instance="h",gpu="0",reason="{}"'
    promtool(tmp_path, series, [(expr("mlscope-gpus", "Clock throttle reasons"), "5m", [
        (f"{{{out.format('hw_slowdown')}}}", 2),                 # red: throttled
        (f"{{{out.format('hw_thermal_slowdown')}}}", 0),
        (f"{{{out.format('sw_power_cap')}}}", 1),                # blue: normal
        (f"{{{out.format('gpu_idle')}}}", 0),
        (f"{{{out.format('applications_clocks_setting')}}}", 1),
    ])])


def test_gpu_energy_and_dollars_per_gpu_hour(tmp_path):
    g = 'instance="h",uuid="GPU-{0}",gpu="{0}"'
    promtool(tmp_path, {
        # 60 kJ a minute each (1 kW): 3.6 MJ = 1 kWh per GPU in the hour before 2h
        f"gpu_energy_consumed_joules_total{{{g.format(0)}}}": "0+60000x120",
        f"gpu_energy_consumed_joules_total{{{g.format(1)}}}": "0+60000x120",
        # $4/h each; 50 % and 30 % busy: $8 for 0.8 busy GPU-hours = $10 per busy GPU-hour
        f"instance_gpu:gpu_cost_dollars_per_hour:share{{{g.format(0)}}}": "4x120",
        f"instance_gpu:gpu_cost_dollars_per_hour:share{{{g.format(1)}}}": "4x120",
        f"instance_gpu:gpu_utilization:avg_ratio_10m{{{g.format(0)}}}": "0.5x120",
        f"instance_gpu:gpu_utilization:avg_ratio_10m{{{g.format(1)}}}": "0.3x120",
    }, [
        (expr("mlscope-gpus", "Energy in range", variables={"__range": "1h"}), "2h", [("{}", 2)]),
        (expr("mlscope-gpus", "Energy per hour"), "2h", [(f"{{{g.format(0)}}}", 1), (f"{{{g.format(1)}}}", 1)]),
        (expr("mlscope-gpus", "$ per GPU-hour", "A"), "2h", [("{}", 4)]),
        (expr("mlscope-gpus", "$ per GPU-hour", "B"), "2h", [("{}", 10)]),
    ])


# ------------------------------------------------------------------ hosts


def test_disk_latency_and_inodes(tmp_path):
    d = 'instance="h",device="nvme0n1"'
    f = 'instance="h",device="/dev/nvme0n1p1",fstype="ext4",mountpoint="{}"'
    promtool(tmp_path, {
        # 64 reads a minute taking 0.5 s in all: 7.8125 ms per read; 32 writes taking 1 s: 31.25 ms per write
        f"node_disk_read_time_seconds_total{{{d}}}": "0+0.5x20",
        f"node_disk_reads_completed_total{{{d}}}": "0+64x20",
        f"node_disk_write_time_seconds_total{{{d}}}": "0+1x20",
        f"node_disk_writes_completed_total{{{d}}}": "0+32x20",
        # 1000 inodes, 250 free: 75 % used; a filesystem without an inode table (0) is left out
        f"node_filesystem_files{{{f.format('/')}}}": "1000x20",
        f"node_filesystem_files_free{{{f.format('/')}}}": "250x20",
        f"node_filesystem_files{{{f.format('/mnt/s3')}}}": "0x20",
        f"node_filesystem_files_free{{{f.format('/mnt/s3')}}}": "0x20",
    }, [
        (expr("mlscope-hosts", "Disk latency", "A"), "15m", [(f"{{{d}}}", 0.0078125)]),
        (expr("mlscope-hosts", "Disk latency", "B"), "15m", [(f"{{{d}}}", 0.03125)]),
        (expr("mlscope-hosts", "Inodes used"), "15m", [(f"{{{f.format('/')}}}", 0.75)]),
    ])

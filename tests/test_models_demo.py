"""`mlscope demo model-server`: vLLM's and Triton's own metric vocabularies (names, labels, buckets,
units), and the model:* rules on it through the shipped scrape jobs and the real Prometheus."""

from __future__ import annotations

import math
import time

import pytest

from helpers import ROOT, Process, Prometheus, free_port, mlscope_args, promtool_check_metrics, samples, scrape
from mlscope.demo import modelserver
from model_servers import one, shipped_job, wait_until

VLLM_E2E_BUCKETS = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                    240.0, 480.0, 960.0, 1920.0, 7680.0]
VLLM_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                     20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]


@pytest.fixture
def demo():
    vllm, triton = free_port(), free_port()
    proc = Process(mlscope_args("demo", "model-server", "--listen", f"127.0.0.1:{vllm}",
                                "--triton-listen", f"127.0.0.1:{triton}"), cwd=ROOT)
    proc.wait_http(f"http://127.0.0.1:{vllm}/-/healthy")
    proc.wait_http(f"http://127.0.0.1:{triton}/-/healthy")
    yield f"127.0.0.1:{vllm}", f"127.0.0.1:{triton}"
    proc.stop()


def buckets(parsed: dict, name: str) -> list[float]:
    return sorted(float(lbls["le"]) for lbls, _ in parsed[name + "_bucket"] if lbls["le"] != "+Inf")


@pytest.mark.integration
def test_the_demo_speaks_vllm_and_triton(demo):
    time.sleep(2.5)  # two simulated seconds of traffic
    vllm = samples(scrape(f"http://{demo[0]}/metrics"))
    labels = {"model_name": "demo-llama", "engine": "0"}
    for name in ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
                 "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:num_preemptions_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
                 "vllm:e2e_request_latency_seconds_count", "vllm:time_to_first_token_seconds_count",
                 "vllm:request_queue_time_seconds_count", "vllm:time_per_output_token_seconds_count"):
        assert vllm[name] and all(lbls.items() >= labels.items() for lbls, _ in vllm[name]), name
    assert {lbls["finished_reason"] for lbls, _ in vllm["vllm:request_success_total"]} == {"stop", "length", "abort"}
    assert buckets(vllm, "vllm:e2e_request_latency_seconds") == VLLM_E2E_BUCKETS
    assert buckets(vllm, "vllm:request_queue_time_seconds") == VLLM_E2E_BUCKETS
    assert buckets(vllm, "vllm:time_to_first_token_seconds") == VLLM_TTFT_BUCKETS
    finished = sum(v for _, v in vllm["vllm:request_success_total"])
    assert finished > 0 and vllm["vllm:e2e_request_latency_seconds_count"][0][1] == finished
    assert 0 <= vllm["vllm:kv_cache_usage_perc"][0][1] <= 1  # a ratio, despite the name
    hits, queries = vllm["vllm:prefix_cache_hits_total"][0][1], vllm["vllm:prefix_cache_queries_total"][0][1]
    assert 0.3 * queries - 3 <= hits <= 0.6 * queries

    text = scrape(f"http://{demo[1]}/metrics")
    assert "\nnv_inference_request_success{" in text and "nv_inference_request_success_total" not in text
    triton = samples(text)
    for name in modelserver.Triton.COUNTERS:
        assert triton[name], name
        assert all(lbls["model"] == "demo-resnet" and lbls["version"] == "1" for lbls, _ in triton[name]), name
    assert {lbls["reason"] for lbls, _ in triton["nv_inference_request_failure"]} == {
        "REJECTED", "CANCELED", "BACKEND", "OTHER"}
    success, inferences = triton["nv_inference_request_success"][0][1], triton["nv_inference_count"][0][1]
    executions = triton["nv_inference_exec_count"][0][1]
    assert success > 0 and executions <= inferences <= success <= 8 * executions + success
    # the exposition parses; promtool's lint objects only to the real servers' own names
    for body in (scrape(f"http://{demo[0]}/metrics"), text):
        result = promtool_check_metrics(body)
        assert result.returncode in (0, 3), result.stderr
        assert all("should not contain" in line or "_count" in line
                   for line in (result.stdout + result.stderr).splitlines() if line), result.stdout


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_model_rules_on_the_demo(demo, tmp_path):
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [shipped_job("vllm", demo[0]), shipped_job("triton", demo[1])]}
    prom = Prometheus(config, tmp_path, rule_files=[ROOT / "alerts" / "models.rules.yml"])
    try:
        llm = '{job="vllm",instance="127.0.0.1",model="demo-llama"}'
        resnet = '{job="triton",instance="127.0.0.1",model="demo-resnet"}'
        prom.wait_for(f"model:latency_seconds:p95_5m{llm}", timeout=60)
        prom.wait_for(f"model:batch_efficiency:ratio5m{resnet}", timeout=60)
        up = {r["metric"]["job"]: r["metric"]["process"] for r in prom.query("up")}
        assert up == {"vllm": "vllm", "triton": "tritonserver"}  # the jobs' default process names
        assert one(prom, f"model:requests:rate5m{llm}") > 0
        assert 0 <= one(prom, f"model:errors:ratio_rate5m{llm}") < 0.2
        p50, p95, p99 = (one(prom, f"model:latency_seconds:{q}_5m{llm}") for q in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99 < 30
        assert 0 < one(prom, f"model:time_to_first_token_seconds:p95_5m{llm}") < 5
        assert one(prom, f"model:tokens_generated:rate5m{llm}") > 0
        assert 0.3 <= one(prom, f"model:cache_hit:ratio5m{llm}") <= 0.6
        assert 0 < one(prom, f"model:batch_efficiency:ratio5m{llm}") <= 1
        assert 1 <= one(prom, f"model:batch_size:mean5m{resnet}") <= 8
        assert 0 < one(prom, f"model:batch_efficiency:ratio5m{resnet}") <= 1
        assert 0.1 <= one(prom, f"model:cache_hit:ratio5m{resnet}") <= 0.35
        assert one(prom, f"model:latency_seconds:mean5m{resnet}") > 0
        assert one(prom, f"model:queue_time_seconds:mean5m{resnet}") > 0
        values = [float(r["value"][1]) for r in prom.query('{__name__=~"model:.*"}')]
        assert values and all(math.isfinite(v) for v in values)  # no NaN, no Inf
    finally:
        prom.stop()


@pytest.mark.integration
def test_the_walls_model_grid_on_the_demo_and_when_it_dies(tmp_path):
    """The wall's Model health query on the real demo through the shipped jobs and rules: a row per model
    while it serves, and DOWN (3), not an empty grid, once the server is gone."""
    from dashboards.queries import panel_targets, substitute

    (health,) = [substitute(t["expr"], {}) for title, t in panel_targets("mlscope-wall")
                 if title == "Model health" and t["refId"] == "A"]
    vllm, triton = free_port(), free_port()
    server = Process(mlscope_args("demo", "model-server", "--listen", f"127.0.0.1:{vllm}",
                                  "--triton-listen", f"127.0.0.1:{triton}"), cwd=ROOT)
    prom = None
    try:
        server.wait_http(f"http://127.0.0.1:{vllm}/-/healthy")
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [shipped_job("vllm", f"127.0.0.1:{vllm}"),
                                     shipped_job("triton", f"127.0.0.1:{triton}")]}
        prom = Prometheus(config, tmp_path, rule_files=[ROOT / "alerts" / "models.rules.yml"])
        prom.wait_for('model:requests:rate5m{model="demo-resnet"}', timeout=60)
        prom.wait_for('model:requests:rate5m{model="demo-llama"}', timeout=60)
        states = {r["metric"]["model"]: float(r["value"][1]) for r in prom.query(health)}
        # serving: OK, AT RISK or FAILING by its error and latency burn rates (never IDLE, never DOWN)
        assert set(states) == {"demo-llama", "demo-resnet"} and all(v in (0, 1, 2) for v in states.values()), states
        server.stop()
        wait_until(lambda: {r["metric"]["model"]: float(r["value"][1]) for r in prom.query(health)}
                   == {"demo-llama": 3, "demo-resnet": 3}, 30, "DOWN for both demo models",
                   lambda: str(prom.query(health)))
    finally:
        server.stop()
        if prom:
            prom.stop()

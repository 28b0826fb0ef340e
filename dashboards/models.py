"""mlscope-models: self-hosted model servers (vLLM, Triton, TorchServe, HTTP-histogram servers).

Variable `model` (multi-select, All = .*). Every panel reads the model:* recording rules
(alerts/models.rules.yml, docs/models.md), so each server kind shows in the same panels; a panel
stays empty for servers that do not measure it (e.g. tokens for Triton, quantiles for TorchServe).
"""

from __future__ import annotations

from .panels import Q, Section, build_dashboard, high_bad, low_bad, neutral, query_variable, stat_panel, timeseries_panel

UID = "mlscope-models"
TITLE = "MLScope / Models"

M = 'model=~"$model"'
LEGEND = "{{model}} ({{job}} on {{instance}})"


def per_model(record: str, suffix: str = "") -> Q:
    return Q(f"{record}{{{M}}}", LEGEND + suffix)


def build():
    variables = [query_variable("model", "Model", "label_values(model:requests:rate5m, model)")]
    overview = Section("Now", [
        stat_panel("Requests/s", [f"sum(model:requests:rate5m{{{M}}})"], "reqps", neutral()),
        stat_panel("Tokens/s", [f"sum(model:tokens_generated:rate5m{{{M}}})"], "short", neutral(),
                   description="Generated tokens per second (vLLM)."),
        stat_panel("Worst p95 latency", [f"max(model:latency_seconds:p95_5m{{{M}}})"], "s", high_bad(1, 5)),
        stat_panel("Worst error ratio", [f"max(model:errors:ratio_rate5m{{{M}}})"], "percentunit",
                   high_bad(0.01, 0.05), decimals=2),
        stat_panel("Cost", [f"sum(model:cost_dollars_per_hour:sum{{{M}}})"], "currencyUSD", neutral(),
                   description="$/h of the GPUs the model servers use (their share of each machine's price)."),
        stat_panel("Cost per 1k requests, last hour", [f"model:cost_per_1k_requests_dollars:1h{{{M}}}"], "currencyUSD",
                   neutral(), names=True, decimals=4, description="Last hour; empty for a model without requests."),
    ])
    throughput = Section("Throughput", [
        timeseries_panel("Requests per second", [per_model("model:requests:rate5m")], "reqps", w=8, min_val=0),
        timeseries_panel("Tokens per second", [
            per_model("model:tokens_generated:rate5m", " generated"),
            per_model("model:tokens_prompt:rate5m", " prompt"),
        ], "short", w=8, min_val=0, description="vLLM's generation and prefill tokens."),
        timeseries_panel("Error ratio", [per_model("model:errors:ratio_rate5m")], "percentunit",
                         high_bad(0.01, 0.05), w=8, min_val=0, fill=0, show_thresholds=True,
                         description="vLLM aborted requests, Triton failures, HTTP 5xx answers."),
    ])
    latency = Section("Latency", [
        timeseries_panel("Latency p50 / p95 / p99", [
            per_model("model:latency_seconds:p50_5m", " p50"),
            per_model("model:latency_seconds:p95_5m", " p95"),
            per_model("model:latency_seconds:p99_5m", " p99"),
            per_model("model:latency_seconds:mean5m", " mean"),
        ], "s", w=12, min_val=0, fill=0,
            description="Quantiles from the servers' histograms; Triton and TorchServe count only totals: mean."),
        timeseries_panel("Time to first token p95", [per_model("model:time_to_first_token_seconds:p95_5m")], "s",
                         high_bad(0.5, 1), w=6, min_val=0, fill=0, show_thresholds=True),
        timeseries_panel("Queue delay", [per_model("model:queue_time_seconds:mean5m")], "s", w=6, min_val=0,
                         fill=0, description="Mean time a request waited before it ran."),
        timeseries_panel("Requests in flight", [
            per_model("model:requests_in_flight:little5m", " Little's law"),
            per_model("model:requests_running:sum", " running"),
            per_model("model:requests_waiting:sum", " waiting"),
        ], "short", w=12, min_val=0, fill=0,
            description="Rate x mean latency, beside the server's own running and waiting gauges."),
        timeseries_panel("Latency SLO: requests over 1 s", [
            per_model("model:latency_slo_violations:ratio_rate1h", " 1h"),
            per_model("model:latency_slo_violations:ratio_rate5m", " 5m"),
        ], "percentunit", high_bad(0.01, 0.144), w=12, min_val=0, fill=0, show_thresholds=True,
            description="The objective allows 1%; 14.4% over 1h and 5m pages (ModelLatencySLOBurn)."),
    ])
    batching = Section("Batching and caches", [
        timeseries_panel("Batch size", [per_model("model:batch_size:mean5m")], "short", w=6, min_val=0, fill=0,
                         description="Triton: inferences per execution; vLLM: sequences running."),
        timeseries_panel("Batch efficiency", [per_model("model:batch_efficiency:ratio5m")], "percentunit",
                         low_bad(0.1, 0.3), w=6, min_val=0, max_val=1, fill=0,
                         description="Mean batch / the configured largest batch (model:batch_size:max)."),
        timeseries_panel("Cache hit ratio", [per_model("model:cache_hit:ratio5m")], "percentunit", w=6,
                         min_val=0, max_val=1, fill=0, description="vLLM prefix cache, Triton response cache."),
        timeseries_panel("KV-cache use and preemptions", [
            per_model("model:kv_cache_usage:ratio", " KV cache"),
            per_model("model:preemptions:rate5m", " preemptions/s"),
        ], "percentunit", high_bad(0.9, 0.95), w=6, min_val=0, fill=0, show_thresholds=True),
    ])
    gpu_and_cost = Section("GPU and cost", [
        timeseries_panel("GPU utilization and SM occupancy", [
            per_model("model:gpu_utilization:mean_ratio", " utilization"),
            per_model("model:gpu_sm_occupancy:mean_ratio", " SM occupancy"),
        ], "percentunit", w=12, min_val=0, max_val=1, fill=0,
            description="Mean over the GPUs the server's process holds memory on (target label `process`)."),
        timeseries_panel("Cost per hour", [per_model("model:cost_dollars_per_hour:sum")], "currencyUSD", w=12,
                         min_val=0, stack=True),
        timeseries_panel("Cost per 1k requests", [per_model("model:cost_per_1k_requests_dollars:1h")],
                         "currencyUSD", w=12, min_val=0, fill=0, decimals=4),
        timeseries_panel("Cost per 1M tokens", [per_model("model:cost_per_1m_tokens_dollars:1h")], "currencyUSD",
                         w=12, min_val=0, fill=0),
    ])
    return build_dashboard(
        UID, TITLE, "Self-hosted model servers: traffic, latency, batching, caches, their GPUs and cost per request.",
        [overview, throughput, latency, batching, gpu_and_cost], extra_tags=["models"], variables=variables)


__all__ = ["UID", "TITLE", "build"]

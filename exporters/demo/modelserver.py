"""`mlscope demo model-server`: simulated self-hosted inference for the demo's simulated GPU hosts.

It serves what the real servers serve, and nothing else:
- on --listen (default :8000, like `vllm serve`): vLLM's /metrics for the model `demo-llama`
  (`vllm:*` names, labels `model_name` and `engine`, vLLM's histogram buckets, seconds);
- on --triton-listen (default :8002, like Triton's metrics port): Triton's /metrics for the model
  `demo-resnet` (`nv_inference_*` counters without a _total suffix, durations in microseconds,
  labels `model` and `version`). Triton declares them `counter`; prometheus_client cannot write a
  counter without _total, so here they are untyped (PromQL treats both alike).
Traffic rises and falls over 10 minutes; at its peak vLLM's 16 sequence slots fill and requests wait.
The simulated GPU exporter reports processes named `vllm` and `tritonserver`, which is what joins
these servers to GPUs for cost per model (docs/models.md).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from typing import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from .. import __version__
from ..cli import demo_settings, stop_on_signals
from ..settings import Setting, choice, listen_address
from ..web import MetricsServer, load_web_config

log = logging.getLogger("mlscope.demo.modelserver")

LLM, LLM_MAX_SEQS = "demo-llama", 16
VISION = "demo-resnet"
SETTINGS = [
    Setting("listen", listen_address, ("", 8000), "address of the vLLM metrics, HOST:PORT"),
    Setting("triton_listen", listen_address, ("", 8002), "address of the Triton metrics, HOST:PORT"),
    Setting("log_level", choice("debug", "info", "warning", "error"), "info", "log level"),
]

# vLLM's buckets (vllm/v1/metrics/loggers.py)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0)


class VLLM:
    """vLLM's V1 engine metrics for one model, fed with simulated finished requests."""

    def __init__(self, model: str):
        self.registry = CollectorRegistry()
        labels = {"model_name": model, "engine": "0"}
        names = list(labels)

        def counter(name, doc, extra=()):
            return Counter(name, doc, names + list(extra), registry=self.registry)

        def histogram(name, doc, buckets):
            return Histogram(name, doc, names, buckets=buckets, registry=self.registry).labels(**labels)

        def gauge(name, doc):
            return Gauge(name, doc, names, registry=self.registry).labels(**labels)

        success = counter("vllm:request_success", "Count of successfully processed requests.", ["finished_reason"])
        self.finished = {reason: success.labels(**labels, finished_reason=reason)
                         for reason in ("stop", "length", "abort")}
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.").labels(**labels)
        self.generation_tokens = counter("vllm:generation_tokens",
                                         "Number of generation tokens processed.").labels(**labels)
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.").labels(**labels)
        self.prefix_queries = counter("vllm:prefix_cache_queries",
                                      "Prefix cache queries, in terms of number of queried tokens.").labels(**labels)
        self.prefix_hits = counter("vllm:prefix_cache_hits",
                                   "Prefix cache hits, in terms of number of cached tokens.").labels(**labels)
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             REQUEST_LATENCY_BUCKETS)
        self.queue = histogram("vllm:request_queue_time_seconds",
                               "Histogram of time spent in WAITING phase for request.", REQUEST_LATENCY_BUCKETS)
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              TTFT_BUCKETS)
        self.tpot = histogram("vllm:time_per_output_token_seconds",
                              "Histogram of time per output token in seconds.", TPOT_BUCKETS)
        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_cache = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")

    def tick(self, rng: random.Random, load: float) -> None:
        """One second of traffic at `load` (0-1): about 4 requests/s at full load."""
        latencies = []
        for _ in range(int(4 * load + rng.random())):
            prompt, generated = rng.randint(200, 1200), rng.randint(20, 300)
            queued = rng.uniform(0.0, 0.02) + max(0.0, load - 0.8) * rng.uniform(0.5, 2.0)
            ttft = queued + 0.03 + prompt * 0.0002
            tpot = rng.uniform(0.008, 0.015) * (1 + load)
            e2e = ttft + generated * tpot
            reason = rng.choices(("stop", "length", "abort"), (85, 14.95, 0.05))[0]  # 0.05 % aborted: OK
            self.finished[reason].inc()
            self.prompt_tokens.inc(prompt)
            self.generation_tokens.inc(generated)
            self.prefix_queries.inc(prompt)
            self.prefix_hits.inc(int(prompt * rng.uniform(0.3, 0.6)))
            for histogram, value in ((self.e2e, e2e), (self.queue, queued), (self.ttft, ttft), (self.tpot, tpot)):
                histogram.observe(value)
            latencies.append(e2e)
        # Little's law: sequences in flight = arrival rate x latency; beyond the slots they wait.
        in_flight = round(4 * load * (sum(latencies) / len(latencies) if latencies else 0.0))
        running = min(LLM_MAX_SEQS, in_flight)
        self.running.set(running)
        self.waiting.set(max(0, in_flight - LLM_MAX_SEQS))
        usage = min(1.0, running / LLM_MAX_SEQS * rng.uniform(0.85, 1.0))
        self.kv_cache.set(round(usage, 4))
        if usage > 0.95:
            self.preemptions.inc()


class Triton:
    """Triton's per-model metrics: counters named without _total, durations in microseconds."""

    COUNTERS = {
        "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
        "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
        "nv_inference_count": "Number of inferences performed (does not include cached requests)",
        "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
        "nv_inference_request_duration_us": "Cumulative inference request duration in microseconds "
                                            "(includes cached requests)",
        "nv_inference_queue_duration_us": "Cumulative inference queuing duration in microseconds "
                                          "(includes cached requests)",
        "nv_inference_compute_input_duration_us": "Cumulative compute input duration in microseconds "
                                                  "(does not include cached requests)",
        "nv_inference_compute_infer_duration_us": "Cumulative compute inference duration in microseconds "
                                                  "(does not include cached requests)",
        "nv_inference_compute_output_duration_us": "Cumulative inference compute output duration in "
                                                   "microseconds (does not include cached requests)",
        "nv_cache_num_hits_per_model": "Number of cache hits per model",
        "nv_cache_num_misses_per_model": "Number of cache misses per model",
    }
    FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")

    def __init__(self, model: str):
        self.labels = {"model": model, "version": "1"}
        self.values = {name: 0.0 for name in self.COUNTERS if name != "nv_inference_request_failure"}
        self.failures = {reason: 0.0 for reason in self.FAILURE_REASONS}
        self.pending = 0.0
        self.lock = threading.Lock()

    def tick(self, rng: random.Random, load: float) -> None:
        """One second at `load`: about 30 requests/s at full load, batched up to 8."""
        requests = int(30 * load + rng.random())
        cached = sum(rng.random() < 0.2 for _ in range(requests))
        computed = requests - cached
        batch = max(1, min(8, round(1 + 7 * load * rng.uniform(0.8, 1.0))))
        executions = math.ceil(computed / batch)
        failed = sum(rng.random() < 0.003 for _ in range(computed))  # 0.3 %: AT RISK on the wall
        queue_us = computed * rng.uniform(200, 800) * (1 + 4 * max(0.0, load - 0.8))
        infer_us = executions * (2000 + 600 * batch)
        io_us = computed * 150.0
        with self.lock:
            add = self.values
            add["nv_inference_request_success"] += requests - failed
            add["nv_inference_count"] += computed - failed
            add["nv_inference_exec_count"] += executions
            add["nv_inference_queue_duration_us"] += queue_us
            add["nv_inference_compute_input_duration_us"] += io_us
            add["nv_inference_compute_infer_duration_us"] += infer_us
            add["nv_inference_compute_output_duration_us"] += io_us
            add["nv_inference_request_duration_us"] += queue_us + infer_us * batch + 2 * io_us + cached * 50
            add["nv_cache_num_hits_per_model"] += cached
            add["nv_cache_num_misses_per_model"] += computed
            self.failures["BACKEND"] += failed
            self.pending = float(max(0, round((load - 0.9) * 40)))

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            values, failures, pending = dict(self.values), dict(self.failures), self.pending
        for name, doc in self.COUNTERS.items():
            metric = Metric(name, doc, "unknown")
            if name == "nv_inference_request_failure":
                for reason, value in failures.items():
                    metric.add_sample(name, {**self.labels, "reason": reason}, value)
            else:
                metric.add_sample(name, self.labels, values[name])
            yield metric
        metric = Metric("nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting "
                        "execution per-model.", "gauge")
        metric.add_sample("nv_inference_pending_request_count", self.labels, pending)
        yield metric


def load_at(t: float) -> float:
    """Traffic between 20% and 100% of the peak, over a 10-minute cycle."""
    return 0.6 + 0.4 * math.sin(2 * math.pi * t / 600)


def simulate(servers: Sequence, stop: threading.Event, seed: int = 0) -> None:
    rng = random.Random(seed)
    start = time.monotonic()
    while not stop.wait(1.0):
        load = load_at(time.monotonic() - start)
        for server in servers:
            server.tick(rng, load)


def main(argv: Sequence[str]) -> int:
    cfg = demo_settings("mlscope demo model-server", __doc__.splitlines()[0], SETTINGS, argv)
    vllm, triton = VLLM(LLM), Triton(VISION)
    web = load_web_config(None)
    servers = [MetricsServer(cfg.listen, [vllm.registry], web, "MLScope demo: vLLM", __version__),
               MetricsServer(cfg.triton_listen, [triton], web, "MLScope demo: Triton", __version__)]
    stop = stop_on_signals(log, lambda: [server.shutdown() for server in servers])
    threading.Thread(target=simulate, args=([vllm, triton], stop), daemon=True, name="traffic").start()
    threading.Thread(target=servers[1].serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    for server, what in zip(servers, ("vLLM", "Triton")):
        log.info("%s metrics for the demo on http://%s:%s/metrics", what, server.server_address[0],
                 server.server_address[1])
    servers[0].serve_forever(poll_interval=0.2)
    for server in servers:
        server.server_close()
    return 0

"""Real model servers (TorchServe, MLServer) on the CPU, scraped by the real Prometheus with the shipped
scrape jobs and alerts/models.rules.yml: the model:* rules must match what the test sent and what the
server itself counted.

Rates are compared with a 6% tolerance: rate() extrapolates to the edges of its window by up to
about 1.6 s (start and end, 1 s scrapes), and each test scrapes for at least 30 s before reading.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import ROOT, Prometheus, samples, scrape
from model_servers import MLServer, TorchServe, one, shipped_job

pytestmark = [pytest.mark.models, pytest.mark.integration]

RULES = [ROOT / "alerts" / "models.rules.yml"]
MIN_SCRAPED_SECONDS = 30
TOLERANCE = 0.06


def start_prometheus(tmp_path, job: dict) -> Prometheus:
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": [job]}
    (tmp_path / "prometheus").mkdir()
    return Prometheus(config, tmp_path / "prometheus", rule_files=RULES)


def wait_value(prom: Prometheus, expr: str, expected: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        result = prom.query(expr)
        got = [float(r["value"][1]) for r in result]
        if got == [expected]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{expr}: {got}, expected {expected}")


def settle(prom: Prometheus, started: float) -> None:
    """Scrape for MIN_SCRAPED_SECONDS since the first sample, then let the rules run twice."""
    time.sleep(max(0.0, started + MIN_SCRAPED_SECONDS - time.monotonic()) + 2.5)


def counter(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` with `labels` (the parser adds _total to TorchServe's µs counters)."""
    parsed = samples(text)
    found = parsed.get(name) or parsed.get(name + "_total", [])
    return sum(v for lbls, v in found if all(lbls.get(k) == x for k, x in labels.items()))


def quantile_bucket(q: float, buckets: dict[float, float]) -> tuple[float, float]:
    """The bucket (lower, upper bound) holding the q-quantile of the server's own bucket increases.

    rate() extrapolates each bucket series by its own factor, so Prometheus' interpolation inside the
    bucket moves a little with the scrape timing; the bucket itself does not."""
    rank = q * buckets[float("inf")]
    lower = 0.0
    for le in sorted(buckets):
        if buckets[le] >= rank:
            return lower, le
        lower = le
    raise AssertionError(buckets)


@pytest.fixture
def torchserve(tmp_path):
    server = TorchServe(tmp_path / "torchserve")
    yield server
    server.stop()


@pytest.fixture
def mlserver(tmp_path):
    server = MLServer(tmp_path / "mlserver")
    yield server
    server.stop()


def test_torchserve_requests_latency_and_queue_time(torchserve, tmp_path):
    prom = start_prometheus(tmp_path, shipped_job("torchserve", torchserve.metrics_target))
    try:
        assert torchserve.predict([1, 2, 3, 4]) == [5.0, 5.0]  # y = 0.5 * (1 + 2 + 3 + 4), twice
        wait_value(prom, 'ts_inference_requests_total{job="torchserve",model="tiny",instance="127.0.0.1"}', 1)
        started = time.monotonic()
        before = scrape(f"http://{torchserve.metrics_target}/metrics")
        with ThreadPoolExecutor(4) as pool:  # 4 at a time: the server batches them (batch size 4)
            answers = list(pool.map(torchserve.predict, [[i, 0, 0, 0] for i in range(40)]))
        assert answers == [[0.5 * i, 0.5 * i] for i in range(40)]
        after = scrape(f"http://{torchserve.metrics_target}/metrics")

        def delta(name):
            return counter(after, name, model_name="tiny") - counter(before, name, model_name="tiny")

        assert delta("ts_inference_requests_total") == 40  # the server's own count
        latency_s, queue_s = delta("ts_inference_latency_microseconds") / 1e6, delta("ts_queue_latency_microseconds") / 1e6
        wait_value(prom, 'ts_inference_requests_total{job="torchserve",model="tiny"}', 41)
        settle(prom, started)

        sel = '{job="torchserve",instance="127.0.0.1",model="tiny"}'
        assert one(prom, f"model:requests:rate5m{sel}") * 300 == pytest.approx(40, rel=TOLERANCE)
        assert one(prom, f"model:latency_seconds:mean5m{sel}") == pytest.approx(latency_s / 40, rel=TOLERANCE)
        assert one(prom, f"model:queue_time_seconds:mean5m{sel}") == pytest.approx(queue_s / 40, rel=TOLERANCE)
        assert one(prom, f"model:requests_in_flight:little5m{sel}") * 300 == pytest.approx(latency_s, rel=TOLERANCE)
        # TorchServe has no latency histogram, no per-model failures and no batch-size metric
        for record in ("model:latency_seconds:p95_5m", "model:errors:ratio_rate5m", "model:batch_size:mean5m"):
            assert prom.query(f"{record}{sel}") == [], record
    finally:
        prom.stop()


def test_mlserver_as_the_generic_http_histogram(mlserver, tmp_path):
    prom = start_prometheus(tmp_path, shipped_job("mlserver", mlserver.metrics_target, model="doubler"))
    try:
        assert mlserver.infer([1, 2]).json()["outputs"][0]["data"] == [2, 4]
        assert mlserver.infer([-1, 2]).status_code == 500
        sel = '{job="mlserver",instance="127.0.0.1",model="doubler"}'
        wait_value(prom, f"sum(http_server_request_duration_seconds_count{sel})", 2)
        started = time.monotonic()
        before = scrape(f"http://{mlserver.metrics_target}/metrics")
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda x: mlserver.infer(x).status_code, [[i, 1] for i in range(40)] + [[-i - 1, 1] for i in range(10)]))
        assert sorted(codes) == [200] * 40 + [500] * 10
        after = scrape(f"http://{mlserver.metrics_target}/metrics")
        infer = {"path": "/v2/models/{model_name}/infer"}
        assert counter(after, "model_infer_request_success_total") - counter(before, "model_infer_request_success_total") == 40
        assert counter(after, "model_infer_request_failure_total") - counter(before, "model_infer_request_failure_total") == 10
        buckets = {float(le): counter(after, "rest_server_request_duration_seconds_bucket", le=le, **infer)
                   - counter(before, "rest_server_request_duration_seconds_bucket", le=le, **infer)
                   for le in {lbls["le"] for lbls, _ in samples(after)["rest_server_request_duration_seconds_bucket"]}}
        assert buckets[float("inf")] == 50
        latency_s = (counter(after, "rest_server_request_duration_seconds_sum", **infer)
                     - counter(before, "rest_server_request_duration_seconds_sum", **infer))
        wait_value(prom, f"sum(http_server_request_duration_seconds_count{sel})", 52)
        settle(prom, started)

        assert one(prom, f"model:requests:rate5m{sel}") * 300 == pytest.approx(50, rel=TOLERANCE)
        assert one(prom, f"model:errors:ratio_rate5m{sel}") == pytest.approx(10 / 50, rel=TOLERANCE)
        assert one(prom, f"model:latency_seconds:mean5m{sel}") == pytest.approx(latency_s / 50, rel=TOLERANCE)
        got = [one(prom, f"model:latency_seconds:{record}{sel}") for record in ("p50_5m", "p95_5m", "p99_5m")]
        assert got == sorted(got)
        for q, value in zip((0.5, 0.95, 0.99), got):
            lower, upper = quantile_bucket(q, buckets)
            assert lower <= value <= upper, (q, value, buckets)
        assert one(prom, f"model:latency_slo_violations:ratio_rate5m{sel}") == pytest.approx(1 - buckets[1.0] / 50, abs=0.02)
        # only the inference route is renamed: readiness probes and /metrics do not count
        assert prom.query('http_server_request_duration_seconds_count{path!~".*/infer"}') == []
    finally:
        prom.stop()
